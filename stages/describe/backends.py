"""LLM backends behind one small interface: chat conversations in, answer texts out.

Backends only generate. Prompt building, parsing and filtering live in `prompts`, `parse` and
`pool`, and the sampling parameters in `sampling`, all shared, so the vLLM backend is a thin
wrapper around calls whose inputs and outputs the transformers backend exercises too. vLLM runs
in an environment of its own (describe.python; `environment`), on a GPU or, with vLLM's CPU
build, on the CPU (the slow tests run it there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol

from ..common.io import sha256_file
from ..common.progress import progress
from .sampling import SamplingSpec, to_generate_kwargs, to_vllm_kwargs
from .vllm_support import VLLMSetupError

Conversation = list[dict[str, str]]


class Backend(Protocol):
    """What every generating backend offers: its name, the model it records, its engine set-up and `chat`."""
    name: str
    model_id: str  # what the `model` column records
    engine: dict   # how the engine was set up, for the file metadata

    def chat(self, conversations: list[Conversation], *, n: int, temperature: float, top_p: float,
             max_tokens: int, seed: int, desc: str = "") -> list[list[str]]:
        """For each conversation, `n` sampled answers (temperature 0: greedy, then n must be 1)."""


class TransformersBackend:
    """transformers on CPU or GPU; a GGUF file (the default SmolLM2) is de-quantised on load."""

    name = "transformers"
    batch_size = 32  # step-2 conversations per generate() call

    def __init__(self, model: str, gguf_file: str | None = None, gguf_sha256: str | None = None,
                 device: str = "auto", threads: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads > 0:
            torch.set_num_threads(threads)
        from ..method.models import resolve_device

        kwargs = {}
        if gguf_file:
            path = Path(model) / gguf_file
            if path.exists() and gguf_sha256 and (got := sha256_file(path)) != gguf_sha256:
                raise ValueError(f"{path}: sha256 {got} differs from describe.gguf_sha256 {gguf_sha256}; "
                                 "delete it and fetch it again (rule fetch_smollm2)")
            kwargs["gguf_file"] = gguf_file
        device = str(resolve_device(device))
        tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
        # float32 on CPU: bf16 kernels differ between CPUs, and the default must be reproducible.
        dtype = torch.float32 if device == "cpu" else "auto"
        llm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, **kwargs).to(device).eval()
        self._setup(llm, tokenizer, f"{model}/{gguf_file}" if gguf_file else model, device)

    @classmethod
    def from_objects(cls, model, tokenizer, model_id: str, device: str = "cpu") -> "TransformersBackend":
        """A backend around an already loaded model and tokenizer (tests use stand-ins)."""
        self = cls.__new__(cls)
        self._setup(model, tokenizer, model_id, device)
        return self

    def _setup(self, model, tokenizer, model_id: str, device: str) -> None:
        import torch

        self._torch = torch
        self.model, self.tokenizer, self.model_id, self.device = model, tokenizer, model_id, device
        # Left padding: every row of a batch then ends where generation starts.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.engine = {"device": device, "dtype": str(getattr(model, "dtype", "unknown")),
                       "batch_size": self.batch_size}

    def chat(self, conversations, *, n, temperature, top_p, max_tokens, seed, desc=""):
        """For each conversation, `n` answers from `generate`, `batch_size` conversations at a time; the
        torch seed is `seed` + the batch's index, and a progress bar counts generated tokens."""
        torch = self._torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Progress(StoppingCriteria):
            # Called once per generated token: a progress bar that never stops generation.
            def __init__(self, bar):
                self.bar = bar

            def __call__(self, input_ids, scores, **kwargs):
                self.bar.update(1)
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        spec = SamplingSpec.make(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
        sampling = to_generate_kwargs(spec)
        answers: list[list[str]] = []
        batches = [conversations[i:i + self.batch_size] for i in range(0, len(conversations), self.batch_size)]
        for b, batch in enumerate(batches):
            texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in batch]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            # Seeded per batch: the answers depend on the seed and the inputs only.
            torch.manual_seed(spec.seed + b)
            label = f"{desc} [{b + 1}/{len(batches)}]" if len(batches) > 1 else desc
            with progress(total=max_tokens, desc=label, unit="tok", leave=False) as bar, torch.inference_mode():
                out = self.model.generate(**enc, pad_token_id=self.tokenizer.pad_token_id,
                                          stopping_criteria=StoppingCriteriaList([_Progress(bar)]), **sampling)
            new = out[:, enc["input_ids"].shape[1]:]
            texts_out = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            answers += [texts_out[i * n:(i + 1) * n] for i in range(len(batch))]
        return answers


# Set before vllm is imported (vllm reads them when it starts its engine):
# - spawn: a process that has touched CUDA (torch.cuda.is_available() in a test, a GPU stage run
#   before in the same process) cannot fork a CUDA worker ("Cannot re-initialize CUDA in forked
#   subprocess");
# - no engine-core process: vLLM's documented switch that makes offline scheduling, and so the
#   sampled answers, reproducible for a seed (docs.vllm.ai, "Reproducibility").
# - vLLM's log on stderr (its default is stdout): the stage's own output stays its own (check-vllm
#   prints its report there), and the rule sends both streams to the job's log.
# setdefault: a user's own setting wins, and the metadata records what was in effect.
VLLM_ENV_DEFAULTS = {"VLLM_WORKER_MULTIPROC_METHOD": "spawn", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                     "VLLM_LOGGING_STREAM": "ext://sys.stderr"}
# On vLLM's CPU build the KV cache takes VLLM_CPU_KVCACHE_SPACE GiB; unset, vLLM reserves
# gpu_memory_utilization (0.9) of the machine's memory and stops when that much is not free, as on
# any shared machine. 1 GiB holds 46,000 tokens of SmolLM2-135M (18,000 of a 7B Qwen2.5).
VLLM_CPU_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1"}
VLLM_ENV_RECORDED = (*VLLM_ENV_DEFAULTS, *VLLM_CPU_ENV_DEFAULTS, "OMP_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND",
                     "VLLM_BATCH_INVARIANT", "HF_HUB_OFFLINE")


def vllm_environment(cpu: bool = False, threads: int = 0) -> dict[str, str | None]:
    """Set VLLM_ENV_DEFAULTS (and on the CPU build VLLM_CPU_ENV_DEFAULTS) in os.environ where not
    set already (before vllm is imported); returns the recorded variables as now in effect, None
    for those unset. On the CPU `threads` > 0 (the job's threads) sets OMP_NUM_THREADS, as the
    transformers backend sets torch's threads: without it vLLM's CPU worker runs torch on 1 thread."""
    for key, value in {**VLLM_ENV_DEFAULTS, **(VLLM_CPU_ENV_DEFAULTS if cpu else {})}.items():
        os.environ.setdefault(key, value)
    if cpu and threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return {key: os.environ.get(key) for key in VLLM_ENV_RECORDED}


class VLLMBackend:
    """vLLM on one or more GPUs (`tensor_parallel_size`), or on the CPU with vLLM's CPU build;
    `model` is an HF id or a local folder holding config.json, tokenizer and weights (SmolLM2:
    the folder `convert` wrote); `engine_args` (describe.vllm_args) go to `LLM` unchanged. Runs in
    the describe job's own environment (describe.python); checked by `python -m stages.describe
    check-vllm` (docs/describe.md)."""

    name = "vllm"

    def __init__(self, model: str, tensor_parallel_size: int = 1, seed: int = 0, engine_args: dict | None = None,
                 threads: int = 0, device: str = "auto"):
        from .vllm_support import kv_cache_problem, model_form, on_cpu, require_gguf_support, require_vllm

        # before vllm is imported and anything loaded: vLLM installed here (the CPU build where
        # describe.device says cpu), a GGUF model it can read (a plugin in recent vLLM), a
        # converted folder whose files are the ones converted
        distribution = require_vllm(sys.executable)
        cpu = on_cpu(distribution)
        if device == "cpu" and not cpu:
            raise VLLMSetupError(f"describe.device is cpu, but {sys.executable} has vLLM's GPU build ({distribution[0]} "
                                 f"{distribution[1]}): build the describe environment with `python -m stages.describe "
                                 "env cpu`, or set describe.device to auto")
        require_gguf_support(model, engine_args)
        form = model_form(model, engine_args, distribution)
        env = vllm_environment(cpu=cpu, threads=threads)
        from vllm import LLM, SamplingParams

        self._sampling_params = SamplingParams
        self.model_id = model
        llm_args = llm_kwargs(model, tensor_parallel_size, seed, engine_args)
        self.engine = {"llm_args": llm_args, "env": env, "model_form": form,
                       "vllm": {"distribution": distribution[0], "version": distribution[1],
                                "device": "cpu" if cpu else "gpu"}}
        try:
            self.llm = LLM(**llm_args)
        except ValueError as e:  # what vLLM raises when the KV cache does not fit: one line naming the setting
            problem = kv_cache_problem(str(e), cpu=cpu, kvcache_space=os.environ.get("VLLM_CPU_KVCACHE_SPACE"),
                                       engine_args=engine_args)
            if problem is None:
                raise
            raise VLLMSetupError(problem) from e

    def close(self) -> None:
        """Shut the engine down and free its GPU memory, so that another engine can start in this
        process (check-vllm's fresh engine); the cleanup vLLM's own tests do between engines."""
        import gc

        self.llm = None
        try:
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )
        except ImportError:
            pass
        else:
            destroy_model_parallel()
            destroy_distributed_environment()
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def chat(self, conversations, *, n, temperature, top_p, max_tokens, seed, desc=""):
        """For each conversation, `n` answers from one `LLM.chat` call with every sampling parameter set."""
        spec = SamplingSpec.make(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
        # every field set: with an explicit SamplingParams vLLM ignores generation_config.json,
        # so anything left out would take vLLM's defaults rather than the model's
        params = self._sampling_params(**to_vllm_kwargs(spec))
        # vLLM's own progress bar, unless tqdm is switched off: vLLM 0.32 then divides by the
        # disabled bar's elapsed time, 0 (ZeroDivisionError in LLM._run_engine)
        shown = os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true", "yes")
        results = self.llm.chat(conversations, sampling_params=params, use_tqdm=shown)
        return [[o.text for o in r.outputs] for r in results]


def llm_kwargs(model: str, tensor_parallel_size: int, seed: int, engine_args: dict | None) -> dict:
    """The keyword arguments of `vllm.LLM` (which passes them all to `EngineArgs`):
    describe.vllm_args plus the keys the config names itself."""
    return {**(engine_args or {}), "model": model, "tensor_parallel_size": tensor_parallel_size, "seed": seed}


def make_backend(params: dict, seed: int, threads: int = 0) -> Backend:
    """The generating backend named by a validated `describe` config section."""
    if params["backend"] == "transformers":
        return TransformersBackend(params["model"], params.get("gguf_file"), params.get("gguf_sha256"),
                                   device=params.get("device", "auto"), threads=threads)
    if params["backend"] == "vllm":
        return VLLMBackend(params["model"], params.get("tensor_parallel_size", 1), seed=seed,
                           engine_args=params.get("vllm_args"), threads=threads, device=params.get("device", "auto"))
    raise ValueError(f"describe.backend {params['backend']!r} does not generate (the file backend reads files)")
