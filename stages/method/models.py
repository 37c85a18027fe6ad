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
from open_clip.transformer import text_global_pool
from safetensors.torch import save_file

from ..common.io import sha256_file
from .clip_cache import CLIP_CACHE

LOCAL_DIR = "local-dir:"
WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"


@dataclass
class Clip:
    """A loaded open_clip model with its train and val transforms, tokenizer and identity (`model_identity`)."""
    model: torch.nn.Module
    preprocess_train: object
    preprocess_val: object
    tokenizer: object
    identity: dict


def load_clip(name: str, pretrained: str | None = None, device: str | torch.device = "cpu",
              cache_dir: str | None = CLIP_CACHE, **model_kwargs) -> Clip:
    """Create an open_clip model with its transforms, tokenizer and identity (for fingerprints).
    Pretrained weights are read from `cache_dir` (the workflow's, where rule fetch_clip put them;
    open_clip downloads them there if they are missing)."""
    if name.startswith(LOCAL_DIR) and not Path(name[len(LOCAL_DIR):]).is_dir():
        raise FileNotFoundError(f"model folder {name[len(LOCAL_DIR):]} not found (from model name {name!r})")
    model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
        name, pretrained=pretrained, device=device, cache_dir=cache_dir, **model_kwargs)
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
    """The torch device of a config's `device`: "auto" is CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `finetune.precision`: bf16 on CUDA under "auto", None = full precision."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    if precision in ("auto", "fp32"):
        return None
    raise ValueError(f"finetune.precision: unknown precision {precision!r} (auto | fp32 | bf16)")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The autocast context of every forward pass (a no-op when `dtype` is None)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def can_trim_text(model: torch.nn.Module) -> bool:
    """Whether `encode_text` may be given tokens cut after the last end-of-text token.

    True for CLIP text towers that are causal and pool at the end-of-text token (argmax of the
    token ids): positions after it never reach the output, so cutting them changes nothing.
    """
    return (isinstance(model, open_clip.CLIP) and model.text_pool_type == "argmax"
            and model.attn_mask is not None)


def trim_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Cut a [N, context] token batch after its last end-of-text token (the highest id)."""
    return tokens[:, : int(tokens.argmax(dim=1).max()) + 1]


def encode_text(model: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text` for tokens of any length up to the context (see `can_trim_text`).

    Captions are ~15 of CLIP's 77 tokens: the text transformer then does a fifth of the work.
    Mirrors open_clip's CLIP.encode_text with the positional embedding and causal mask cut to
    the batch's length.
    """
    n = tokens.shape[1]
    if n == model.positional_embedding.shape[0]:
        return model.encode_text(tokens)
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:n].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    x = text_global_pool(x, tokens, model.text_pool_type)
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x if model.text_projection is None else x @ model.text_projection
