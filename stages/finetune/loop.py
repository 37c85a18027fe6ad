"""The training loop: epochs (`fine_tune`: optimizer, resume state, per-epoch resume.pt, selection)
and steps (`train_epoch`), the losses' running means (`Meter`) and the stop on a non-finite loss
(`NonFiniteLossError`).
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import torch

from ..method.losses import diminishing_lambda
from ..common.progress import progress as progress_bar
from ..method.schedule import warmup_cosine_lr
from . import distributed
from .checkpoint import finish, save
from .selection import Selection
from .setup import Run, train_loader
from .step import Student, TeacherImages, compute_loss, prepare_batch


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Meter:
    """Sums of the losses kept on the device, read (one sync) once per logging interval."""

    def __init__(self, ctx: distributed.Context):
        self.ctx = ctx
        self.sums = torch.zeros(3, device=ctx.device)
        self.first_bad = torch.full((), -1, device=ctx.device, dtype=torch.long)
        self.n, self.tic = 0, time.perf_counter()

    def add(self, step: int, loss, loss_ft, reg) -> None:
        loss = loss.detach()
        self.sums += torch.stack([loss, loss_ft.detach(), reg.detach()]).float()
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss),
                                     torch.full_like(self.first_bad, step), self.first_bad)
        self.n += 1

    def flush(self):
        """(steps, seconds, mean losses over steps and ranks, first non-finite step or None)."""
        means = (distributed.mean(self.ctx, self.sums) / self.n).tolist()
        bad = int(self.first_bad)
        any_bad = distributed.any_rank(self.ctx, bad >= 0)
        out = (self.n, time.perf_counter() - self.tic, means, (bad if bad >= 0 else "?") if any_bad else None)
        self.sums.zero_()
        self.n, self.tic = 0, time.perf_counter()
        return out


def fine_tune(run: Run, state: dict | None, progress: bool) -> dict:
    cfg, ctx, method = run.cfg, run.ctx, run.method
    loader, sampler, to_batch = train_loader(run)
    student = Student(run.student_clip, run.head)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                            fused=ctx.device.type in ("cuda", "cpu") or None)
    selection = Selection(cfg.get("select", "last"))
    start_epoch, epochs = 0, cfg["epochs"]
    if state is not None:
        run.student_clip.load_state_dict(state["model"])
        if run.head is not None:
            run.head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        selection.load_state_dict(state["selection"])
        start_epoch = state["epoch"]
        print(f"resuming {cfg['name']} seed {run.seed} from {run.resume_path} (epoch {start_epoch}/{epochs})",
              file=sys.stderr)
    model = distributed.wrap(ctx, student)
    teacher_images = TeacherImages(run.teacher, len(loader.dataset), cache=not cfg.get("augment", True))

    total_steps = len(loader) * epochs
    step = start_epoch * len(loader)
    bar = progress_bar(total=total_steps, initial=step, disable=not (progress and ctx.is_main),
                       desc=f"{cfg['name']} seed {run.seed}", dynamic_ncols=True, mininterval=0.5)
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        lam = diminishing_lambda(cfg["lambda"], epoch, epochs, cfg["schedule"]) if method.regularizer else 0.0
        step = train_epoch(run, model, opt, loader, to_batch, teacher_images, epoch, lam, step, total_steps, bar)
        selection.after_epoch(run, epoch)
        if ctx.is_main:
            # saved before the line is printed: an epoch reported is an epoch a retry resumes after
            save(run.resume_path, run.state(epoch + 1, step, run.weights(), optimizer=opt.state_dict(),
                                            rng=torch.get_rng_state(), selection=selection.state_dict()))
            row = run.log[-1]
            print(f"{cfg['name']} seed {run.seed} epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f} "
                  f"reg {row['regularizer'] or 0:.3e} lambda {lam:.3g} {row['images_per_s']:.0f} img/s"
                  + (f" val worst-group {row['val_worst_group']:.2f}" if row.get("val_worst_group") is not None else "")
                  # the epoch's wall time: loader start, selection and the resume checkpoint included
                  # (img/s counts steps only)
                  + f" ({time.perf_counter() - started:.2f} s)",
                  file=sys.stderr)
        distributed.barrier(ctx)
    bar.close()
    return finish(run, selection, epochs, step)


def train_epoch(run: Run, model, opt, loader, to_batch: Callable, teacher_images: TeacherImages, epoch: int,
                lam: float, step: int, total_steps: int, bar) -> int:
    """One pass over the training set; returns the global step count after it."""
    cfg, ctx, method = run.cfg, run.ctx, run.method
    log_every = cfg.get("log_every", 10)
    meter = Meter(ctx)
    for i, raw in enumerate(loader):
        lr = warmup_cosine_lr(step, cfg["lr"], cfg["warmup_steps"], total_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = prepare_batch(to_batch(raw), run.captions, method, ctx.device)
        loss, loss_ft, reg, scale = compute_loss(model, teacher_images, run.teacher_text, run.tau0, method, batch,
                                                 lam, ctx, run.autocast, cfg.get("kl_scale", "student"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        meter.add(step, loss, loss_ft, reg)
        step += 1
        bar.update()
        if meter.n == log_every or i == len(loader) - 1:
            n, seconds, (mean_loss, mean_ft, mean_reg), bad = meter.flush()
            if bad is not None:
                bar.close()
                kept = run.resume_path if run.resume_path.exists() else "none (failed in the first epoch)"
                raise NonFiniteLossError(
                    f"{cfg['name']} seed {run.seed}: non-finite loss at step {bad} (epoch {epoch}, lr {lr:.3g}, "
                    f"lambda {lam:.3g}); stopped. The last good checkpoint is kept: {kept}. "
                    f"Lower finetune.lr or check the data.")
            run.log.append({"phase": "ft", "step": step, "epoch": epoch, "loss": mean_loss, "loss_ft": mean_ft,
                            "regularizer": mean_reg if method.regularizer else None, "lambda": lam, "lr": lr,
                            "logit_scale": float(scale.detach()), "images_per_s": n * cfg["batch_size"] / seconds})
            bar.set_postfix(loss=f"{mean_loss:.4f}", reg=f"{mean_reg:.2e}", refresh=False)
    return step
