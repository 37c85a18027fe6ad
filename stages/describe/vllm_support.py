"""What the installed vLLM can load, checked before vLLM is imported or loads a model.

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

PLUGIN_PACKAGE = "vllm-gguf-plugin"
PLUGIN_GROUP, PLUGIN_NAME = "vllm.general_plugins", "gguf"
GGUF_LEFT_CORE = (0, 24)  # the first release without in-tree GGUF: 0.24.0

# vLLM's `repo_id:quant_type` form of a GGUF on the hub (e.g. unsloth/Qwen3-0.6B-GGUF:Q4_K_M)
_REMOTE_GGUF = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*:(?:[A-Za-z0-9]+-)*(?:I?Q\d|TQ\d|B?F16|F32)[\w+-]*$",
                          re.IGNORECASE)


class VLLMSetupError(RuntimeError):
    """The installed vLLM cannot run this describe section; raised before any model is loaded."""


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


def installed_version(package: str) -> str | None:
    """The installed version of a distribution package, or None if it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def plugin_installed() -> bool:
    """The plugin's entry point is what vLLM loads (vllm.plugins.load_general_plugins)."""
    return any(ep.name == PLUGIN_NAME for ep in metadata.entry_points(group=PLUGIN_GROUP))


def require_gguf_support(model: str, engine_args: dict | None = None) -> None:
    """Raise VLLMSetupError if the installed vLLM cannot load the GGUF `model`."""
    problem = gguf_problem(model, engine_args, vllm_version=installed_version("vllm"),
                           plugin_installed=plugin_installed(), vllm_plugins=os.environ.get("VLLM_PLUGINS"))
    if problem:
        raise VLLMSetupError(problem)
