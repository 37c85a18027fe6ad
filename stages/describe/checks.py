"""What the describe section needs beyond the schema, checked before any job runs.

The Snakefile validates the config against the schema; `workflow/rules/describe.smk` then calls
`check` on the validated experiments, and the CLI does the same, so that a value an engine would
refuse only after loading its model (vLLM: `temperature: 0` with several samples) or a setting a
backend would silently ignore (a GGUF file with vLLM) stops everything with one message naming
the key. `effective` is the section as a backend uses it: what the rule passes and the Parquet
metadata records.
"""

from __future__ import annotations

from ..config import DESCRIBE_PYTHON, SMOLLM2_SAFETENSORS, ConfigError
from .fetch import DEFAULT_DEST, GGUF_NAME, GGUF_SHA256

GENERATING = ("transformers", "vllm")


def effective(params: dict) -> dict:
    """The describe section without the settings its backend does not read, and with the
    interpreter it runs in.

    The schema defaults of `gguf_file` and `gguf_sha256` name the transformers backend's SmolLM2
    file, so a vLLM config that does not mention them still carries them; they are dropped (set to
    null) for vLLM instead of being recorded as if they had been used. Other values are refused
    by `check`. `python` null is the workflow's own interpreter, except for vLLM, which never runs
    in the training environment: there it is the describe environment's (DESCRIBE_PYTHON)."""
    params = dict(params)
    if params.get("backend") == "vllm":
        if params.get("gguf_file") == GGUF_NAME:
            params["gguf_file"] = None
        if params.get("gguf_sha256") == GGUF_SHA256:
            params["gguf_sha256"] = None
        if params.get("python") is None:
            params["python"] = DESCRIBE_PYTHON
    return params


def problems(where: str, params: dict) -> list[str]:
    """Every problem of one (schema-validated) describe section at config key `where`, each naming its key."""
    key = f"config key {where}.describe"
    params = effective(params)
    out = []
    backend = params["backend"]
    if backend in GENERATING and params["temperature"] == 0 and params["n_samples"] > 1:
        out.append(f"{key}.n_samples: temperature 0 is greedy decoding, which gives one answer, but n_samples is "
                   f"{params['n_samples']}; set n_samples: 1 or a temperature above 0")
    if backend == "file":
        missing = [t for t in params["types"] if t not in params["files"]]
        if missing:
            out.append(f"{key}.files: backend 'file' needs a file for every type in describe.types; "
                       f"missing {missing}")
    if backend == "vllm":
        if params["model"] == str(DEFAULT_DEST):
            out.append(f"{key}.model: backend vllm needs `model`, an instruct model as an HF id or a local folder "
                       f"in HF layout (e.g. Qwen/Qwen2.5-7B-Instruct, or {SMOLLM2_SAFETENSORS}: SmolLM2 converted for "
                       f"vLLM by rule convert_smollm2); the default {DEFAULT_DEST} is the transformers backend's "
                       "SmolLM2 GGUF folder")
        if params["gguf_file"] is not None:
            out.append(f"{key}.gguf_file: backend vllm does not read gguf_file (a GGUF inside `model`, for the "
                       "transformers backend); set it to null. vLLM loads a GGUF given as the `model` path "
                       "together with the base model's tokenizer in describe.vllm_args.tokenizer")
        if params["gguf_sha256"] is not None:
            out.append(f"{key}.gguf_sha256: backend vllm does not check gguf_sha256; set it to null")
        if params["device"].startswith("cuda"):
            out.append(f"{key}.device: backend vllm places its model itself: `auto` (the job requests "
                       "tensor_parallel_size GPUs) or `cpu` (vLLM's CPU build, no GPU)")
        if params["model"].endswith(".gguf") and not params.get("vllm_args", {}).get("tokenizer"):
            out.append(f"{key}.vllm_args.tokenizer: a .gguf `model` needs the base model's tokenizer (HF id or "
                       "folder), e.g. vllm_args: {tokenizer: Qwen/Qwen2.5-7B-Instruct}")
    return out


def domain_problems(where: str, experiment: dict) -> list[str]:
    """An LLM writing the experiment's pools is told what its images show (`domain`): none given is
    a problem (a default would ask about the wrong images without a word)."""
    d = experiment["describe"]
    if d["backend"] not in GENERATING or d["pools_of"] is not None or experiment.get("domain"):
        return []
    return [f"config key {where}.domain: describe.backend {d['backend']!r} asks an LLM for the spurious settings "
            "of the training images: say what they show (e.g. domain: birds, natural images, chest X-rays), or "
            "use another experiment's pools (describe.pools_of) or your own (describe.backend: file)"]


def check(experiments: dict, where: str = "experiments") -> None:
    """Raise ConfigError listing every problem of every experiment's describe section and domain."""
    lines = [line for name, e in experiments.items()
             for line in problems(f"{where}.{name}", e["describe"]) + domain_problems(f"{where}.{name}", e)]
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def gpus(params: dict) -> int:
    """GPUs the describe job of this section uses, for Snakemake's `gpu` resource: vLLM one per
    tensor-parallel rank, none with `device: cpu` (vLLM's CPU build); transformers one when
    `device` names CUDA (`auto` asks for none and uses a GPU only if the job sees one); the file
    backend none."""
    if params["backend"] == "vllm":
        return 0 if params["device"] == "cpu" else int(params["tensor_parallel_size"])
    if params["backend"] == "transformers" and params["device"].startswith("cuda"):
        return 1
    return 0
