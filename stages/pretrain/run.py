"""The pretrain stage's core: pre-train the synthetic world's tiny CLIP contrastively on its
captioned set (CPU, minutes).

The result is saved in open_clip's `local-dir:` format and from then on is used exactly like a
downloaded CLIP (`load_clip("local-dir:...")`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import open_clip
import torch

from ..common.io import atomic_dir, versions
from ..common.progress import progress
from ..method.models import load_clip, save_local_dir
from ..method.schedule import warmup_cosine_lr
from ..synthetic.teacher import CONTEXT_LENGTH, tiny_clip_config, to_tensor, zeroshot_check


def train(model: open_clip.CLIP, images: np.ndarray, captions: np.ndarray, cfg: dict, seed: int) -> list[dict]:
    """Symmetric InfoNCE over (image, caption) pairs; returns the training log."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tokenizer = open_clip.SimpleTokenizer(context_length=CONTEXT_LENGTH)
    # Captions repeat a lot: tokenise each distinct caption once.
    unique, caption_idx = np.unique(captions, return_inverse=True)
    tokens = tokenizer(list(unique))
    x_all = to_tensor(images)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 and n != "logit_scale"]
    groups = [{"params": decay, "weight_decay": cfg["weight_decay"], "lr_mult": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0}]
    fixed_scale = cfg.get("logit_scale")
    if fixed_scale is None:
        # The learned temperature gets its own learning rate: at the weights' rate a short CPU
        # pre-training leaves it near its initial 14, and a teacher that flat makes the StarFT
        # softmaxes uniform.
        groups.append({"params": [model.logit_scale], "weight_decay": 0.0, "lr_mult": cfg["logit_scale_lr_mult"]})
    else:
        # A fixed temperature (CLIP's learned one ends at its clamp, 100): set once, never trained.
        with torch.no_grad():
            model.logit_scale.fill_(math.log(fixed_scale))
        model.logit_scale.requires_grad_(False)
    # fused: a tiny model's step is dominated by per-parameter overhead (bench/cpu_speedups.py:
    # 0.85 of the for-loop AdamW's step time on one CPU thread)
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=(0.9, 0.98), fused=True)
    loss_fn = open_clip.ClipLoss()
    log, n, bs = [], len(images), cfg["batch_size"]
    model.train()
    start = time.perf_counter()
    for step in (bar := progress(range(cfg["steps"]), desc="pre-train tiny CLIP")):
        for g in opt.param_groups:
            g["lr"] = g["lr_mult"] * warmup_cosine_lr(step, cfg["lr"], cfg["warmup_steps"], cfg["steps"])
        idx = torch.from_numpy(rng.choice(n, bs, replace=False))
        image_features, text_features, scale = model(x_all[idx], tokens[caption_idx[idx]])
        loss = loss_fn(image_features, text_features, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP's clamp: a temperature below 1/100 destabilises training
            model.logit_scale.clamp_(0, math.log(100))
        if step % 20 == 0 or step == cfg["steps"] - 1:
            rec = {"step": step, "loss": float(loss.detach()), "logit_scale": float(scale.detach()),
                   "lr": opt.param_groups[0]["lr"], "images_per_s": (step + 1) * bs / (time.perf_counter() - start)}
            log.append(rec)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", scale=f"{rec['logit_scale']:.1f}")
    return log


def run(synthetic: dict, cfg: dict, pretrain_set: str | Path, out: str | Path, seed: int) -> dict:
    """Pre-train the tiny CLIP on the pretrain set (.npz of images and captions), check it zero-shot,
    and write it atomically to `out` as a local-dir: model with pretrain_report.json; returns the
    report. The saved model is loaded back once, as any CLIP is."""
    data = np.load(pretrain_set)
    model_cfg = tiny_clip_config(cfg, synthetic["image_size"])
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    start = time.perf_counter()
    log = train(model, data["images"], data["captions"], cfg, seed)
    wall = time.perf_counter() - start
    tokenizer = open_clip.SimpleTokenizer(context_length=CONTEXT_LENGTH)
    check = zeroshot_check(model, tokenizer, 2000, synthetic["image_size"], seed)
    report = {"train_seconds": wall, "final_logit_scale": float(model.logit_scale.detach().exp()), "zeroshot": check,
              "pretrain": cfg, "synthetic": synthetic, "seed": seed, "versions": versions(), "log": log}
    with atomic_dir(out) as tmp:
        save_local_dir(model, model_cfg, tmp, extra={"pretrain_report": "pretrain_report.json"})
        (tmp / "pretrain_report.json").write_text(json.dumps(report, indent=2) + "\n")
    # The saved model must load back through the same path as any CLIP.
    load_clip(f"local-dir:{out}")
    return report
