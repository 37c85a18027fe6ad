"""open_clip's side of an exported folder: what `create_model_and_transforms("local-dir:<folder>")`
and `get_tokenizer` read (open_clip 3.x factory: open_clip_config.json with `model_cfg` and
`preprocess_cfg`, weights found as open_clip_model.safetensors, a HF tokenizer's files in the
folder when `text_cfg.hf_tokenizer_name` is set, else open_clip's own CLIP BPE tokenizer)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import open_clip
import torch
from open_clip.tokenizer import DEFAULT_CONTEXT_LENGTH
from open_clip.transformer import QuickGELU

from ..method.models import CONFIG_FILE, LOCAL_DIR

HF_HUB = "hf-hub:"
HEAD_FILE = "linear_head.safetensors"


class ExportError(ValueError):
    """A run that cannot be exported; the message names the file or key."""


def model_config(name: str, model: torch.nn.Module) -> dict:
    """The open_clip model configuration (`model_cfg`) that rebuilds `model`, the model loaded
    from `name`: a local or hub model's own, a built-in one's from open_clip's table.

    A pretrained tag can change the architecture without appearing in the built-in table (OpenAI's
    weights need QuickGELU, which open_clip records in the tag, not in ViT-B-16's config): the
    activation is read off the loaded model, since with the wrong one the export would load and
    give other features.
    """
    if name.startswith(LOCAL_DIR):
        path = Path(name[len(LOCAL_DIR):]) / CONFIG_FILE
        cfg = json.loads(path.read_text())["model_cfg"]
    elif name.startswith(HF_HUB):
        # open_clip's own dependency; the file is in its cache once the model has loaded
        from huggingface_hub import hf_hub_download

        cfg = json.loads(Path(hf_hub_download(name[len(HF_HUB):], CONFIG_FILE)).read_text())["model_cfg"]
    else:
        cfg = open_clip.get_model_config(name.replace("/", "-"))
        if cfg is None:
            raise ExportError(f"model {name!r}: no open_clip configuration of that name")
    cfg = copy.deepcopy(cfg)
    if any(isinstance(m, QuickGELU) for m in model.modules()):
        cfg["quick_gelu"] = True
    return cfg


def preprocess_config(model: torch.nn.Module) -> dict:
    """The loaded model's final preprocessing (mean, std, interpolation, resize mode, ...), which
    open_clip attaches to it; the image size is left out: open_clip takes it from the model."""
    cfg = dict(getattr(model.visual, "preprocess_cfg", None) or {})
    cfg.pop("size", None)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def tokenizer_info(model_cfg: dict) -> dict:
    """What tokenizes text for this model: open_clip's CLIP BPE tokenizer (`SimpleTokenizer`,
    nothing to ship) or a HF tokenizer whose files the export must hold."""
    text = model_cfg.get("text_cfg", {})
    hf = text.get("hf_tokenizer_name") or None
    return {"tokenizer": "HFTokenizer" if hf else "SimpleTokenizer", "hf_tokenizer_name": hf,
            "context_length": text.get("context_length", DEFAULT_CONTEXT_LENGTH)}


def save_tokenizer(tokenizer, model_cfg: dict, folder: Path) -> None:
    """A HF tokenizer's files into the folder: open_clip's `local-dir:` loads them from there."""
    if tokenizer_info(model_cfg)["hf_tokenizer_name"]:
        if not hasattr(tokenizer, "save_pretrained"):
            raise ExportError(f"text_cfg.hf_tokenizer_name is set but the tokenizer {type(tokenizer).__name__} "
                              "cannot be saved")
        tokenizer.save_pretrained(folder)
