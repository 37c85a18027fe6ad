"""Loading CLIP models: one function for open_clip names, `hf-hub:` and `local-dir:` models.

The synthetic world's tiny CLIP is saved in open_clip's `local-dir:` format (open_clip_config.json
+ open_clip_model.safetensors) and from then on is loaded exactly like a downloaded model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

from .io import sha256_file

LOCAL_DIR = "local-dir:"
WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"


@dataclass
class Clip:
    model: torch.nn.Module
    preprocess_train: object
    preprocess_val: object
    tokenizer: object
    identity: dict


def load_clip(name: str, pretrained: str | None = None, device: str | torch.device = "cpu",
              **model_kwargs) -> Clip:
    """Create an open_clip model with its transforms, tokenizer and identity (for fingerprints)."""
    if name.startswith(LOCAL_DIR) and not Path(name[len(LOCAL_DIR):]).is_dir():
        raise FileNotFoundError(f"model folder {name[len(LOCAL_DIR):]} not found (from model name {name!r})")
    model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
        name, pretrained=pretrained, device=device, **model_kwargs)
    tokenizer = open_clip.get_tokenizer(name)
    return Clip(model, preprocess_train, preprocess_val, tokenizer, model_identity(name, pretrained))


def model_identity(name: str, pretrained: str | None = None) -> dict:
    """What identifies a model's weights: a local model by the sha256 of its weights file."""
    identity = {"name": name, "pretrained": pretrained}
    if name.startswith(LOCAL_DIR):
        folder = Path(name[len(LOCAL_DIR):])
        weights = next((folder / f for f in (WEIGHTS_FILE, "open_clip_pytorch_model.bin") if (folder / f).is_file()), None)
        if weights is not None:
            identity["weights_sha256"] = sha256_file(weights)
    identity["fingerprint"] = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return identity


def save_local_dir(model: torch.nn.Module, model_cfg: dict, folder: str | Path,
                   preprocess_cfg: dict | None = None, extra: dict | None = None) -> None:
    """Write `model` in open_clip's `local-dir:` format into an existing folder."""
    folder = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    cfg = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
    if extra:
        cfg["starft"] = extra
    (folder / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
