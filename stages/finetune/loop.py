"""The training loop: epochs (`fine_tune`: optimizer, resume state, per-epoch resume.pt, selection,
live tracking, an optional hook after each epoch) and steps (`train_epoch`), the losses' running
means (`Meter`, read as a `MeterReading`) and the stop on a non-finite loss (`NonFiniteLossError`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..method.losses import diminishing_lambda
from ..common.progress import progress as progress_bar
from ..method.schedule import warmup_cosine_lr
from . import distributed
from ..datasets import DataError
from .checkpoint import finish, save
from .selection import Selection, val_metrics
from .setup import Run, train_loader
from .step import StepLoss, Student, TeacherImages, compute_loss, prepare_batch
from .runs import FinetuneConfigError
from .tracking import Tracker, open_tracker


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class MeterReading:
    """The losses of one logging interval, averaged over its steps and the ranks."""

    steps: int
    seconds: float
    loss: float
    loss_ft: float
    regularizer: float
    superclass_share: float
    non_finite: bool              # some rank's loss was NaN or infinite in the interval
    first_bad_step: int | None    # this rank's first such step (None: only another rank's)


class Meter:
    """Sums of the losses kept on the device, read (one sync) once per logging interval."""

    # the parts of a StepLoss it sums, in one tensor (one all-reduce)
    PARTS = ("total", "ft", "regularizer", "superclass_share")

    def __init__(self, ctx: distributed.Context):
        self.ctx = ctx
        self.sums = torch.zeros(len(self.PARTS), device=ctx.device)
        self.first_bad = torch.full((), -1, device=ctx.device, dtype=torch.long)
        self.n, self.tic = 0, time.perf_counter()

    def add(self, step: int, loss: StepLoss) -> None:
        """Add one step's losses to the sums, on the device (no sync); a non-finite total marks
        the step as the interval's first bad one unless one came before."""
        total = loss.total.detach()
        self.sums += torch.stack([getattr(loss, part).detach() for part in self.PARTS]).float()
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(total),
                                     torch.full_like(self.first_bad, step), self.first_bad)
        self.n += 1

    def flush(self) -> MeterReading:
        """The interval's reading; the sums start again."""
        loss, loss_ft, reg, share = (distributed.mean(self.ctx, self.sums) / self.n).tolist()
        bad = int(self.first_bad)
        reading = MeterReading(self.n, time.perf_counter() - self.tic, loss, loss_ft, reg, share,
                               non_finite=distributed.any_rank(self.ctx, bad >= 0),
                               first_bad_step=bad if bad >= 0 else None)
        self.sums.zero_()
        self.n, self.tic = 0, time.perf_counter()
        return reading


def fine_tune(run: Run, state: dict | None, progress: bool, on_epoch: Callable[[int], None] | None = None) -> dict:
    """Fine-tune the run's student for its epochs, from `state` (a resume.pt) when given; after
    each epoch save resume.pt (main process), then call `on_epoch(epochs done)` on every process.
    Returns `checkpoint.finish`'s record."""
    cfg, ctx, method = run.cfg, run.ctx, run.method
    loader, sampler, to_batch = train_loader(run)
    student = Student(run.student_clip, run.head)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=ctx.device.type in ("cuda", "cpu") or None)
    selection = Selection(cfg.select)
    start_epoch, epochs = 0, cfg.epochs
    if state is not None:
        run.student_clip.load_state_dict(state["model"])
        if run.head is not None:
            run.head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        selection.load_state_dict(state["selection"])
        start_epoch = state["epoch"]
        print(f"resuming {cfg.name} seed {run.seed} from {run.resume_path} (epoch {start_epoch}/{epochs})",
              file=sys.stderr)
    model = distributed.wrap(ctx, student)
    teacher_images = TeacherImages(run.teacher, len(loader.dataset), cache=not cfg.augment)

    total_steps = len(loader) * epochs
    step = start_epoch * len(loader)
    tracker = None
    if ctx.is_main:
        tracker = open_tracker(cfg.track, run.out_dir, run.dataset_cfg.get("experiment") or "starft", cfg.name,
                               run.seed, cfg.as_dict(), step if state is not None else None)
    bar = progress_bar(total=total_steps, initial=step, disable=not (progress and ctx.is_main),
                       desc=f"{cfg.name} seed {run.seed}", dynamic_ncols=True, mininterval=0.5)
    try:
        for epoch in range(start_epoch, epochs):
            sampler.set_epoch(epoch)
            started = time.perf_counter()
            lam = diminishing_lambda(cfg.lam, epoch, epochs, cfg.schedule) if method.uses_spurious else 0.0
            step = train_epoch(run, model, opt, loader, to_batch, teacher_images, epoch, lam, step, total_steps, bar,
                               tracker)
            selection.after_epoch(run, epoch)
            if tracker is not None:
                tracker.epoch(epoch + 1, step, tracked_val_metrics(run, selection, tracker))
            if ctx.is_main:
                # saved before the line is printed: an epoch reported is an epoch a retry resumes after
                save(run.resume_path, run.state(epoch + 1, step, run.weights(), optimizer=opt.state_dict(),
                                                rng=torch.get_rng_state(), selection=selection.state_dict()))
                row = run.log[-1]
                print(f"{cfg.name} seed {run.seed} epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f} "
                      f"reg {row['regularizer'] or 0:.3e} lambda {lam:.3g} {row['images_per_s']:.0f} img/s"
                      + (f" val worst-group {row['val_worst_group']:.2f}"
                         if row.get("val_worst_group") is not None else "")
                      # the epoch's wall time: loader start, selection and the resume checkpoint included
                      # (img/s counts steps only)
                      + f" ({time.perf_counter() - started:.2f} s)",
                      file=sys.stderr)
            distributed.barrier(ctx)
            if on_epoch is not None:
                on_epoch(epoch + 1)
    finally:
        bar.close()
        if tracker is not None:
            tracker.close()
    return finish(run, selection, epochs, step)


def tracked_val_metrics(run: Run, selection: Selection, tracker: Tracker) -> dict | None:
    """The val metrics live tracking shows after an epoch: the selection's when it scored them
    (scored once), else scored here; None, said once, when the training set has no val split."""
    if selection.rule != "last":
        return selection.last_metrics
    if tracker.no_val is not None:
        return None
    try:
        return val_metrics(run, "finetune.track")
    except (DataError, FinetuneConfigError) as e:
        tracker.no_val = str(e)
        print(f"{run.cfg.name} seed {run.seed}: finetune.track: no val metrics ({e})", file=sys.stderr)
        return None


def train_epoch(run: Run, model, opt, loader, to_batch: Callable, teacher_images: TeacherImages, epoch: int,
                lam: float, step: int, total_steps: int, bar, tracker: Tracker | None = None) -> int:
    """One pass over the training set; returns the global step count after it. Each training-log
    row also goes to `tracker` (live tracking), when there is one."""
    cfg, ctx, method = run.cfg, run.ctx, run.method
    meter = Meter(ctx)
    for i, raw in enumerate(loader):
        lr = warmup_cosine_lr(step, cfg.lr, cfg.warmup_steps, total_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = prepare_batch(to_batch(raw), run.captions, method, ctx.device)
        loss = compute_loss(model, teacher_images, run.teacher_text, run.tau0, method, batch, lam, ctx, run.autocast,
                            cfg.kl_scale, run.superclasses)
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        opt.step()
        meter.add(step, loss)
        step += 1
        bar.update()
        if meter.n == cfg.log_every or i == len(loader) - 1:
            m = meter.flush()
            if m.non_finite:
                bar.close()
                kept = run.resume_path if run.resume_path.exists() else "none (failed in the first epoch)"
                where = f"at step {m.first_bad_step}" if m.first_bad_step is not None else "on another process"
                raise NonFiniteLossError(
                    f"{cfg.name} seed {run.seed}: non-finite loss {where} (epoch {epoch}, lr {lr:.3g}, "
                    f"lambda {lam:.3g}); stopped. The last good checkpoint is kept: {kept}. "
                    f"Lower finetune.lr or check the data.")
            run.log.append({"phase": "ft", "step": step, "epoch": epoch, "loss": m.loss, "loss_ft": m.loss_ft,
                            "regularizer": m.regularizer if method.uses_spurious else None, "lambda": lam, "lr": lr,
                            "logit_scale": float(loss.logit_scale.detach()),
                            "images_per_s": m.steps * cfg.batch_size / m.seconds,
                            "superclass_share": (m.superclass_share if run.superclasses and method.uses_spurious
                                                 else None)})
            if tracker is not None:
                tracker.row(run.log[-1])
            bar.set_postfix(loss=f"{m.loss:.4f}", reg=f"{m.regularizer:.2e}", refresh=False)
    return step
