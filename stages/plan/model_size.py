"""A CLIP's parameter count and compute per image from its open_clip configuration, without torch.

The Snakefile sizes every job while it builds the DAG, on the login node and again in every
SLURM job; importing open_clip there costs ~5 s each time. So the standard towers (a ViT image
tower with a class token, open_clip's text transformer) are counted from their configuration
by open_clip's own layer shapes (tests/test_plan.py checks the count against the model built on
the meta device); any other tower (ResNet, timm, HF text) is counted by building the model on
the meta device, which needs open_clip.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

REFERENCE_MODEL = "ViT-B-16"   # the model the GPU rates of stages.plan.resources were measured with


def _block(width: int, mlp_ratio: float) -> int:
    """One ResidualAttentionBlock: two LayerNorms, attention in/out projections, the MLP."""
    mlp = int(width * mlp_ratio)
    return 4 * width * width + 4 * width + 2 * width + 2 * width * mlp + mlp + width + 2 * width


def _is_standard(cfg: dict) -> bool:
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    standard_vision = (isinstance(vision.get("layers"), int) and not vision.get("timm_model_name")
                       and not vision.get("attentional_pool") and not vision.get("ls_init_value")
                       and vision.get("no_ln_pre") is not True and vision.get("class_token", True) is not False)
    standard_text = not text.get("hf_model_name") and not text.get("ls_init_value")
    return standard_vision and standard_text and not cfg.get("custom_text")


def towers(cfg: dict) -> dict:
    """{"vision": params, "text": params, "vision_blocks", "text_blocks", "vision_tokens", "text_tokens"}
    of a standard ViT CLIP configuration (open_clip's model_cfg dict); ValueError for another."""
    if not _is_standard(cfg):
        raise ValueError("not a standard ViT CLIP configuration")
    embed = cfg["embed_dim"]
    v, t = cfg["vision_cfg"], cfg.get("text_cfg", {})
    size, patch = v.get("image_size", 224), v.get("patch_size", 16)
    size = size[0] if isinstance(size, (list, tuple)) else size
    w, tokens = v.get("width", 768), (size // patch) ** 2 + 1
    v_blocks = v["layers"] * _block(w, v.get("mlp_ratio", 4.0))
    vision = 3 * patch * patch * w + w + tokens * w + 2 * w + v_blocks + 2 * w + w * embed
    tw, ctx = t.get("width", 512), t.get("context_length", 77)
    t_blocks = t.get("layers", 12) * _block(tw, t.get("mlp_ratio", 4.0))
    text = t.get("vocab_size", 49408) * tw + ctx * tw + t_blocks + 2 * tw + tw * embed
    return {"vision": vision, "text": text + 1, "vision_blocks": v_blocks, "text_blocks": t_blocks,
            "vision_tokens": tokens, "text_tokens": ctx}   # + 1: the logit scale


def open_clip_config(name: str) -> dict | None:
    """The model_cfg of an open_clip model name or a `local-dir:` folder, read from its JSON file
    (None when unknown before a job runs: a `local-dir:` not yet written, an `hf-hub:` id)."""
    if name.startswith("local-dir:"):
        path = Path(name[len("local-dir:"):]) / "open_clip_config.json"
        return json.loads(path.read_text())["model_cfg"] if path.exists() else None
    if name.startswith("hf-hub:"):
        return None
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "model_configs" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


@functools.cache
def _meta_params(name: str) -> int:
    """Parameters of an open_clip model built on the meta device (no memory, no weights)."""
    import open_clip
    import torch

    with torch.device("meta"):
        model = open_clip.create_model(name, pretrained=None, device="meta")
    return sum(p.numel() for p in model.parameters())


@functools.cache
def size(name: str) -> dict | None:
    """{"params", "work"} of model `name` (size_of), None when the model is not known before a job
    runs (module docstring)."""
    cfg = open_clip_config(name)
    return None if cfg is None else size_of(cfg, name)


def size_of(cfg: dict, name: str | None = None) -> dict:
    """{"params", "work"} of an open_clip model_cfg: its parameter count and its compute per
    training image relative to REFERENCE_MODEL's (attention blocks' parameters x tokens, both
    towers: the rates measured with the reference are divided by it). A non-standard tower is
    counted on the meta device (by `name`), its work taken as its parameter ratio."""
    ref = towers(open_clip_config(REFERENCE_MODEL))
    ref_work = ref["vision_blocks"] * ref["vision_tokens"] + ref["text_blocks"] * ref["text_tokens"]
    try:
        t = towers(cfg)
    except ValueError:
        if name is None:
            raise
        params = _meta_params(name)
        return {"params": params, "work": params / (ref["vision"] + ref["text"])}
    work = t["vision_blocks"] * t["vision_tokens"] + t["text_blocks"] * t["text_tokens"]
    return {"params": t["vision"] + t["text"], "work": work / ref_work}


def image_size(name: str, default: int = 224) -> int:
    """The model's input side in pixels (the training loader's crops), `default` when unknown."""
    cfg = open_clip_config(name)
    size = (cfg or {}).get("vision_cfg", {}).get("image_size", default)
    return size[0] if isinstance(size, (list, tuple)) else size
