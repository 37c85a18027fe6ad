"""Checkpoint selection (`finetune.select`): the student's val metrics after an epoch
(`val_metrics`, also what live tracking shows) and which epoch's weights the checkpoint holds
(`Selection`).
"""

from __future__ import annotations

import torch

from ..datasets.datacheck import group_counts
from .setup import Run, split_loader


@torch.no_grad()
def val_metrics(run: Run, purpose: str = "finetune.select: val_worst_group") -> dict:
    """Metrics of the student on the val split (accuracy; group metrics for a set with groups),
    with its own head or the zero-shot head of its text encoder, as the evaluate stage scores it.
    The run's random streams are left as they were, so that scoring changes no later step."""
    from ..method.scoring import evaluate_splits, make_head

    devices = [run.ctx.device] if run.ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        classnames = run.dataset_cfg["classnames"]
        head = make_head(run.student_clip, run.clip.tokenizer, classnames, run.dataset_cfg["evaluate"]["templates"],
                         run.ctx.device, None if run.head is None else run.head.state_dict())
        split = run.cfg.val_split
        val, loader = split_loader(run, split, run.dataset_cfg["evaluate"]["batch_size"], purpose)
        train = run.train_set
        train_counts = (group_counts(*train.labels_and_attributes(), len(train.label_names), train.n_attributes)
                        if train.group_names else None)
        metrics = evaluate_splits(run.student_clip, head, {split: val}, {split: loader}, run.ctx.device,
                                  train_counts, run.autocast_dtype)[split]
    run.student_clip.train()
    return metrics


class Selection:
    """Which weights the checkpoint holds (`finetune.select`): the last epoch's, or those of the
    epoch with the best val worst-group accuracy (the main process evaluates after each epoch)."""

    def __init__(self, rule: str):
        self.rule = rule
        self.history: list[dict] = []
        self.best: dict | None = None      # epoch, val_worst_group, model, head
        self.last_metrics: dict | None = None   # the last epoch's val metrics, when scored (live tracking reads them)

    def after_epoch(self, run: Run, epoch: int) -> None:
        """Under rule `val_worst_group`, on the main process: score the val split after `epoch` (0-based),
        log it, and keep a CPU copy of the weights when they beat the best so far."""
        if self.rule == "last" or not run.ctx.is_main:
            return
        m = self.last_metrics = val_metrics(run)
        self.history.append({"epoch": epoch + 1, "val_worst_group": m["worst_group"], "val_average": m["average"]})
        run.log[-1]["val_worst_group"] = m["worst_group"]
        if self.best is None or m["worst_group"] > self.best["val_worst_group"]:
            model, head = run.weights()
            self.best = {"epoch": epoch + 1, "val_worst_group": m["worst_group"], "model": model, "head": head}

    def weights(self, run: Run) -> tuple[dict, dict | None]:
        """(model, head) state dicts of the checkpoint: the best epoch's, or the run's current weights."""
        return run.weights() if self.best is None else (self.best["model"], self.best["head"])

    def record(self, epochs: int) -> dict:
        """The checkpoint's `selected` entry: the rule and the epoch chosen (1-based; `epochs` under
        "last"), with the val history when an epoch was scored."""
        if self.best is None:
            return {"rule": self.rule, "epoch": epochs}
        return {"rule": self.rule, "epoch": self.best["epoch"], "val_worst_group": self.best["val_worst_group"],
                "history": self.history}

    def state_dict(self) -> dict:
        """The selection's state for resume.pt, best weights included."""
        return {"rule": self.rule, "history": self.history, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        """Restore the history and best weights from `state_dict`'s state (the rule stays the run's)."""
        self.history, self.best = state["history"], state["best"]
