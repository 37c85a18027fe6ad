"""Pre-train the synthetic world's tiny CLIP contrastively on the captioned set (CPU, minutes).

The result is saved in open_clip's `local-dir:` format and from then on is used exactly like a
downloaded CLIP (`load_clip("local-dir:...")`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from .data import group_of
from .io import atomic_dir, versions
from .metrics import group_accuracies
from .models import load_clip, save_local_dir
from .progress import progress
from .schedule import warmup_cosine_lr
from .synthworld import CLASSNAMES, PLACES, SCENE_WORDS, SCENES, render, sample_groups, scenes_of, species_of
from .zeroshot import zeroshot_weights

CONTEXT_LENGTH = 24


def tiny_clip_config(cfg: dict, image_size: int) -> dict:
    """open_clip model_cfg of the tiny CLIP (ViT on 32x32 images, small text transformer)."""
    return {
        "embed_dim": cfg["embed_dim"],
        "vision_cfg": {"image_size": image_size, "layers": cfg["layers"], "width": cfg["width"],
                       "patch_size": cfg["patch_size"], "head_width": 32, "mlp_ratio": 4.0},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": cfg["width"],
                     "heads": max(1, cfg["width"] // 32), "layers": cfg["text_layers"]},
    }


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalised float [N, 3, H, W], as open_clip's eval transform does."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


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


@torch.no_grad()
def zeroshot_check(model, tokenizer, n: int, image_size: int, seed: int) -> dict:
    """Zero-shot accuracy on a fresh, group-balanced set: class, scene type, and per group."""
    rng = np.random.default_rng(seed + 7)
    ys, places = sample_groups(n, None, rng)
    images = np.stack([render(rng.choice(species_of(y)), rng.choice(scenes_of(p)), image_size, rng)
                       for y, p in zip(ys, places)])
    model.eval()
    feats = F.normalize(model.encode_image(to_tensor(images)), dim=-1)
    class_w = zeroshot_weights(model, tokenizer, list(CLASSNAMES), ["This is a picture of a {}.", "a photo of a {}."], "cpu")
    # A place's text embedding: the mean over the names of its scenes ("the forest.", ...).
    scene_w = torch.stack([
        zeroshot_weights(model, tokenizer, [w for s, p in SCENES.items() if p == place for w in SCENE_WORDS[s]],
                         ["the {}."], "cpu").mean(0) for place in range(len(PLACES))])
    pred_y = (feats @ class_w.T).argmax(1).numpy()
    pred_place = (feats @ scene_w.T).argmax(1).numpy()
    accs = group_accuracies(pred_y, ys, group_of(ys, places), 4)
    return {"class_accuracy": 100 * float((pred_y == ys).mean()),
            "scene_accuracy": 100 * float((pred_place == places).mean()),
            "class_group_accuracy": [100 * float(a) for a in accs],
            "class_worst_group": 100 * float(np.min(accs)), "n": n}


def run(synthetic: dict, cfg: dict, pretrain_set: str | Path, out: str | Path, seed: int) -> dict:
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Pre-train the synthetic world's tiny CLIP and save it as local-dir:.")
    p.add_argument("--dataset-config", required=True, help="JSON of the validated dataset config")
    p.add_argument("--pretrain-set", required=True, help=".npz written by stages.synthworld")
    p.add_argument("--out", required=True, help="output folder (local-dir: model)")
    a = p.parse_args(argv)
    cfg = json.loads(a.dataset_config)
    report = run(cfg["data"]["synthetic"], cfg["pretrain"], a.pretrain_set, a.out, cfg["seed"])
    z = report["zeroshot"]
    print(f"pre-trained in {report['train_seconds']:.0f} s; logit scale {report['final_logit_scale']:.1f}; "
          f"zero-shot class {z['class_accuracy']:.1f}% (worst group {z['class_worst_group']:.1f}%), "
          f"scene {z['scene_accuracy']:.1f}%")


if __name__ == "__main__":
    main()
