"""The describe settings: what the schema refuses, what `checks` refuses (each naming its key), the
section as a backend uses it, and the GPUs each backend's job requests."""

import pytest

from stages.config import ConfigError, load, validate
from stages.describe import checks
from stages.describe.fetch import GGUF_NAME, GGUF_SHA256


def dataset(**describe):
    return {"datasets": {"d": {"reader": "waterbirds", "root": "x"}},
            "experiments": {"toy": {"train": "d", "model": {"name": "RN50"}, "domain": "birds", "describe": describe}}}


def describe_of(**describe) -> dict:
    return validate(dataset(**describe))["experiments"]["toy"]["describe"]


def errors(**describe) -> str:
    """The messages of the schema and of `checks.check`, as the Snakefile reports them."""
    try:
        checks.check(validate(dataset(**describe))["experiments"])
    except ConfigError as e:
        return str(e)
    return ""


QWEN = "Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.parametrize("describe, message", [
    # refused by vLLM only after loading the model
    (dict(top_p=0), "config key experiments.toy.describe.top_p: 0 is less than or equal to the minimum of 0"),
    (dict(backend="vllm", model=QWEN, temperature=2.5),
     "config key experiments.toy.describe.temperature: 2.5 is greater than the maximum of 2"),
    # YAML's 8.0 is a float; JSON Schema alone would take it for an integer, vLLM refuses a float n
    (dict(backend="vllm", model=QWEN, n_samples=8.0),
     "config key experiments.toy.describe.n_samples: 8.0 is not of type 'integer'"),
    (dict(backend="vllm", model=QWEN, temperature=0),
     "config key experiments.toy.describe.n_samples: temperature 0 is greedy decoding, which gives one answer"),
    (dict(backend="transformers", temperature=0, n_samples=2), "config key experiments.toy.describe.n_samples"),
    # vllm_args: a validated pass-through
    (dict(backend="vllm", model=QWEN, vllm_args={"max_model_len": "4k"}),
     "config key experiments.toy.describe.vllm_args.max_model_len: '4k' is not of type 'integer'"),
    (dict(backend="vllm", model=QWEN, vllm_args={"gpu_memory_utilization": 1.5}),
     "config key experiments.toy.describe.vllm_args.gpu_memory_utilization: 1.5 is greater than the maximum of 1"),
    (dict(backend="vllm", model=QWEN, vllm_args={"seed": 3}),
     "config key experiments.toy.describe.vllm_args: unknown key(s) ['seed']"),
    (dict(backend="vllm", model=QWEN, vllm_args={"enforce_eager": "yes"}),
     "config key experiments.toy.describe.vllm_args.enforce_eager: 'yes' is not of type 'boolean'"),
    # GGUF and vLLM
    (dict(backend="vllm"), "config key experiments.toy.describe.model: backend vllm needs `model`"),
    (dict(backend="vllm", model=QWEN, gguf_file="qwen-q4.gguf"),
     "config key experiments.toy.describe.gguf_file: backend vllm does not read gguf_file"),
    (dict(backend="vllm", model=QWEN, gguf_sha256="ab" * 32), "config key experiments.toy.describe.gguf_sha256"),
    (dict(backend="vllm", model="/models/qwen-q4_k_m.gguf"), "config key experiments.toy.describe.vllm_args.tokenizer"),
    (dict(backend="vllm", model=QWEN, device="cuda:1"),
     "config key experiments.toy.describe.device: backend vllm places its model itself"),
    # others
    (dict(device="gpu"), "config key experiments.toy.describe.device: 'gpu' does not match"),
    (dict(backend="file", files={"background": "bg.txt"}),
     "config key experiments.toy.describe.files: backend 'file' needs a file for every type in describe.types; "
     "missing ['texture', 'quality']"),
])
def test_describe_settings_an_engine_would_refuse_or_ignore_are_config_errors(describe, message):
    assert message in errors(**describe)


@pytest.mark.parametrize("describe", [
    dict(),  # the default: SmolLM2 GGUF with transformers
    dict(backend="vllm", model=QWEN),  # gguf_* left at their (transformers) defaults
    dict(backend="vllm", model=QWEN, gguf_file=None, gguf_sha256=None, tensor_parallel_size=2,
         vllm_args={"max_model_len": 4096, "dtype": "bfloat16", "trust_remote_code": True}),
    dict(backend="vllm", model="/models/qwen-q4_k_m.gguf", vllm_args={"tokenizer": QWEN}),
    dict(backend="vllm", model=QWEN, temperature=0, n_samples=1),
    dict(backend="vllm", model=QWEN, temperature=2, n_samples=8),  # vLLM's upper bound is allowed
    dict(backend="vllm", model="data/models/smollm2-135m-instruct", device="cpu"),  # vLLM's CPU build
    dict(backend="file", files={"background": "b.txt", "texture": "t.txt", "quality": "q.txt"}, temperature=0),
])
def test_valid_describe_settings_pass(describe):
    assert errors(**describe) == ""


def test_vllm_does_not_record_the_transformers_gguf_defaults():
    params = describe_of(backend="vllm", model=QWEN)
    assert (params["gguf_file"], params["gguf_sha256"]) == (GGUF_NAME, GGUF_SHA256)  # the schema's defaults
    used = checks.effective(params)
    assert (used["gguf_file"], used["gguf_sha256"]) == (None, None)
    assert checks.effective(used) == used
    # the transformers backend keeps them: they name the file it loads
    default = describe_of()
    assert checks.effective(default) == default


@pytest.mark.parametrize("describe, gpus", [
    (dict(backend="vllm", model=QWEN), 1),
    (dict(backend="vllm", model=QWEN, tensor_parallel_size=4), 4),
    (dict(backend="vllm", model=QWEN, device="cpu"), 0),  # vLLM's CPU build
    (dict(backend="transformers", device="cuda"), 1),
    (dict(backend="transformers", device="cuda:1"), 1),
    (dict(backend="transformers", device="cpu"), 0),
    (dict(backend="transformers", device="auto"), 0),
    (dict(backend="file", files={"background": "b"}, device="cuda", tensor_parallel_size=2), 0),
])
def test_gpus_requested_per_backend(describe, gpus):
    assert checks.gpus(describe_of(**describe)) == gpus


def test_shipped_configs_pass_the_describe_checks():
    checks.check(load("config/synthbirds.yaml", "config/paper.yaml")["experiments"])


def test_an_llm_writing_the_pools_needs_the_domain_of_the_images():
    def domain_errors(domain, **describe) -> str:
        cfg = dataset(**describe)
        cfg["experiments"]["toy"].pop("domain")
        if domain is not None:
            cfg["experiments"]["toy"]["domain"] = domain
        cfg["experiments"]["other"] = {"train": "d", "model": {"name": "RN50"}, "domain": "birds"}
        try:
            checks.check(validate(cfg)["experiments"])
        except ConfigError as e:
            return str(e)
        return ""

    assert ("config key experiments.toy.domain: describe.backend 'transformers' asks an LLM for the spurious settings "
            "of the training images: say what they show") in domain_errors(None)
    assert "experiments.toy.domain: describe.backend 'vllm'" in domain_errors(None, backend="vllm", model=QWEN)
    assert domain_errors("chest X-rays") == ""
    # no LLM of its own: another experiment's pools, or a list of your own
    assert domain_errors(None, pools_of="other") == ""
    assert domain_errors(None, backend="file", files={"background": "bg.txt", "texture": "t.txt",
                                                      "quality": "q.txt"}) == ""
