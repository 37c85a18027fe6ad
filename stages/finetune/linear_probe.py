"""The linear probe's driver (lp, and LP-FT's first stage): encode the teacher's features of the
train and val splits, fit the probe of module `probe` and make it the run's head (`fit_linear_probe`).
"""

from __future__ import annotations

import sys

import torch

from ..method.zeroshot import encode_images
from . import probe
from .setup import Run, split_loader


def fit_linear_probe(run: Run) -> None:
    """lp, and LP-FT's first stage: the head becomes the converged probe of module `probe`.

    Every rank fits the same probe on all images: cheap next to fine-tuning, and no gather.
    """
    device = run.ctx.device
    feats = []
    for split in (run.cfg.get("train_split", "train"), run.cfg.get("val_split", "val")):
        _, loader = split_loader(run, split, run.cfg["batch_size"], "the linear probe (lp, lpft)")
        f, y, _ = encode_images(run.teacher, loader, device,
                                desc=f"linear-probe features ({split})", autocast_dtype=run.autocast_dtype)
        feats += [f.to(device), y.to(device)]
    linear = run.head.linear
    best, fits = probe.fit_probe(*feats, linear.weight, linear.bias, run.cfg["lp_l2_grid"])
    with torch.no_grad():
        linear.weight.copy_(best.weight)
        linear.bias.copy_(best.bias)
    run.probe = {"l2": best.l2, "fits": [f.record() for f in fits]}
    run.log += [{"phase": "lp", "step": f.iterations, "epoch": 0, "loss": f.objective, "loss_ft": f.cross_entropy,
                 "l2": f.l2, "val_accuracy": f.val_accuracy} for f in fits]
    if run.ctx.is_main:
        unconverged = [f.l2 for f in fits if not f.converged]
        print(f"linear probe: l2 {best.l2:g} (val accuracy {best.val_accuracy:.2f}) of {len(fits)} strengths"
              + (f"; not converged in {probe.MAX_ITER} iterations at l2 {unconverged}" if unconverged else ""),
              file=sys.stderr)
