"""A run's weights as the evaluate stage scores them, read from its checkpoint.

The towers are the checkpoint's `model` loaded into the teacher's architecture; WiSE-FT is
theta = (1 - a) * theta0 + a * theta1 at `finetune.wiseft_alpha` with theta0 the teacher's
(zero-shot) weights, and a linear head (lp, ft, lpft, starft_ce) is interpolated with the
zero-shot head of the teacher's text encoder, as stages.evaluate does it: the same functions
(stages.method.scoring.interpolate, zeroshot_weights, LinearHead), in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..method.models import Clip, load_clip, resolve_device
from ..method.scoring import interpolate
from ..method.zeroshot import LinearHead, zeroshot_weights
from .layout import ExportError


@dataclass
class RunWeights:
    """A run's weights as scored: the model holding them, its checkpoint, and its linear head if any."""
    clip: Clip                     # the teacher's model, transforms and tokenizer; model holds the run's weights
    ckpt: dict                     # the checkpoint (its config, teacher identity, selected epoch, ...)
    head: dict | None              # {"weight" [C, D], "bias" [C]} on the CPU, or None
    classnames: list[str] | None   # the head's label space
    alpha: float | None            # WiSE-FT's mixing coefficient, None for a run's own weights


def load_checkpoint(path: str | Path) -> dict:
    """A fine-tuning checkpoint, loaded on the CPU; ExportError when the file is missing or lacks
    model, config or teacher."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint {path} not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    missing = [k for k in ("model", "config", "teacher") if k not in ckpt]
    if missing:
        raise ExportError(f"{path}: not a fine-tuning checkpoint (no {', '.join(missing)})")
    return ckpt


def run_weights(cfg: dict, method: str, checkpoint: str | Path, data_check: dict | None = None) -> RunWeights:
    """The weights of run `method` (`wiseft`: the `finetune.wiseft_of` checkpoint interpolated at
    `finetune.wiseft_alpha`). `data_check` (the training set's) gives the class names and
    templates of the zero-shot head that WiSE-FT mixes into a linear head."""
    ckpt = load_checkpoint(checkpoint)
    model_cfg = cfg["model"]
    clip = load_clip(model_cfg["name"], model_cfg.get("pretrained"), device=resolve_device(cfg.get("device", "cpu")))
    if ckpt["teacher"].get("fingerprint") != clip.identity["fingerprint"]:
        raise ExportError(f"{checkpoint}: fine-tuned from teacher {ckpt['teacher'].get('name')!r} (fingerprint "
                          f"{ckpt['teacher'].get('fingerprint')}), but model.name {model_cfg['name']!r} loads "
                          f"fingerprint {clip.identity['fingerprint']}: the teacher changed since the run")
    model = clip.model.eval()
    device = next(model.parameters()).device
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ckpt["model"])
    head = ckpt.get("head")
    classnames = ckpt.get("classnames") if head is not None else None
    alpha = None
    if method == "wiseft":
        alpha = float(cfg["finetune"]["wiseft_alpha"])
        theta1 = {k: v.clone() for k, v in model.state_dict().items()}
        if head is not None:
            head = _mixed_head(clip, theta0, head, classnames, data_check, alpha, device, checkpoint)
        model.load_state_dict(interpolate(theta0, theta1, alpha))
    if head is not None:
        head = {"weight": head["linear.weight"].detach().float().cpu().contiguous(),
                "bias": head["linear.bias"].detach().float().cpu().contiguous()}
    return RunWeights(clip, ckpt, head, classnames, alpha)


def _mixed_head(clip: Clip, theta0: dict, head: dict, classnames, data_check, alpha, device, checkpoint) -> dict:
    """The run's linear head interpolated with the teacher's zero-shot head (stages.evaluate's WiSE-FT)."""
    if data_check is None:
        raise ExportError(f"{checkpoint}: WiSE-FT of a run with a linear head needs the training set's data "
                          "check (its class names and templates make the zero-shot head it is mixed with)")
    if data_check["classnames"] != classnames:
        raise ExportError(f"{checkpoint}: its head's classes ({', '.join(classnames[:3])}, ...) are not the data "
                          f"check's of {data_check.get('dataset')} ({', '.join(data_check['classnames'][:3])}, ...)")
    model = clip.model
    model.load_state_dict(theta0)
    zs = LinearHead(zeroshot_weights(model, clip.tokenizer, classnames, data_check["templates"], device),
                    float(model.logit_scale.detach().exp()))
    zs_state = {k: v.to(device) for k, v in zs.state_dict().items()}
    return interpolate(zs_state, {k: v.to(device) for k, v in head.items()}, alpha)
