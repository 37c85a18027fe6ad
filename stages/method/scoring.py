"""How a run is scored: its classifier head (its own linear head, else the zero-shot head of its
text encoder), WiSE-FT's weight interpolation, predictions and each split's metrics.

Shared by the evaluate stage and fine-tuning's val selection. `target` is a data set's split as
stages.datasets opens it (a ClassificationSet: its `predict` maps head logits to its labels, its
`group` gives each sample's group). Several scoring points (WiSE-FT's alphas: a model state and
its head each) are scored on each decoded batch, so that a split's images are decoded once; the
spuriosity drift (stages.method.drift), when asked for, is measured on the same batches.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..common.progress import progress
from .metrics import group_metrics, threshold_free_metrics
from .models import autocast
from .zeroshot import LinearHead, zeroshot_weights


class Scored(NamedTuple):
    """One split scored at every point: predictions [N] and, when kept, the logits [N, C] in the
    target's label space, per point; the samples' labels and attributes [N]."""

    preds: dict
    logits: dict | None
    y: torch.Tensor
    attribute: torch.Tensor


@torch.no_grad()
def predict_points(model, heads: dict, target, loader, device, load=None, autocast_dtype=None, drift=None,
                   keep_logits: bool = False) -> Scored:
    """Predicted labels (in the target's label space) of every scoring point, with labels and
    attributes, and with `keep_logits` the logits they are the argmax of (a group target's few
    classes: its threshold-free metrics need the scores).

    heads: {point: head}. load(point), when given, puts the model's weights at the point before its
    features are computed (WiSE-FT's alphas); without it every point shares the model's weights and
    one forward pass. Each batch is decoded and moved to the device once, whatever the number of
    points; memory holds one batch's images, features and logits, and the predictions. `drift` (a
    DriftMeter) gets each point's image features of each batch, and the teacher's of the same images.
    """
    model.eval()
    preds = {point: [] for point in heads}
    logits = {point: [] for point in heads} if keep_logits else None
    ys, attributes = [], []
    for images, y, attribute, _ in progress(loader, desc=f"encode {target.name} {target.split}", leave=False):
        images = images.to(device, non_blocking=True)
        feats = None
        if drift is not None:
            with autocast(device, autocast_dtype):
                teacher = drift.teacher_features(images)
        for point, head in heads.items():
            if load is not None:
                load(point)
            if feats is None or load is not None:
                with autocast(device, autocast_dtype):
                    feats = F.normalize(model.encode_image(images).float(), dim=-1)
            scores = target.restrict(head(feats).float())
            preds[point].append(scores.argmax(dim=1).cpu())
            if keep_logits:
                logits[point].append(scores.cpu())
            if drift is not None:
                drift.add(point, feats, teacher, torch.as_tensor(y))
        ys.append(torch.as_tensor(y))
        attributes.append(torch.as_tensor(attribute))
    return Scored({point: torch.cat(p) for point, p in preds.items()},
                  None if logits is None else {point: torch.cat(p) for point, p in logits.items()},
                  torch.cat(ys), torch.cat(attributes))


def zeroshot_head(model, tokenizer, classnames, templates, device):
    """The zero-shot head of the model's text encoder: normalised image features [N, D] -> cosine
    logits [N, C] (unscaled)."""
    weights = zeroshot_weights(model, tokenizer, classnames, templates, device)
    return lambda feats: feats @ weights.T


def make_head(model, tokenizer, classnames, templates, device, head_state: dict | None):
    """The run's classifier: its own linear head if it has one, else the zero-shot head."""
    if head_state is None:
        return zeroshot_head(model, tokenizer, classnames, templates, device)
    n_classes, dim = head_state["linear.weight"].shape
    head = LinearHead(torch.zeros(n_classes, dim), 1.0).to(device)
    head.load_state_dict(head_state)
    return head.eval()


def interpolate(theta0: dict, theta1: dict, alpha: float) -> dict:
    """WiSE-FT weights (1 - alpha) * theta0 + alpha * theta1 (non-float buffers taken from theta1)."""
    return {k: mix(theta0[k], v, alpha) for k, v in theta1.items()}


def mix(t0: torch.Tensor, t1: torch.Tensor, alpha: float) -> torch.Tensor:
    """One tensor of `interpolate`: (1 - alpha) * t0 + alpha * t1, or t1 if it is not a float."""
    return (1 - alpha) * t0 + alpha * t1 if t1.is_floating_point() else t1


def split_metrics(target, pred, y, attribute, train_counts) -> dict:
    """Accuracy of one split, and for a group-shift set its group metrics."""
    out = {"accuracy": 100 * float((pred == y).float().mean()), "n": len(y)}
    if target.group_names:
        group = target.group(y, attribute).numpy()
        # the literature weights by the training groups; a set without a train split by its own
        counts = train_counts if train_counts is not None else np.bincount(group, minlength=target.n_groups)
        out.update(group_metrics(pred.numpy(), y.numpy(), group, target.n_groups, counts))
    return out


VAL = "val"   # the split a group target's threshold-free metrics choose their biases on


def class_prior(train_counts, n_classes: int) -> np.ndarray | None:
    """The classes' shares of a target's training split, from its group counts (None: no train split)."""
    if train_counts is None:
        return None
    return np.asarray(train_counts, dtype=np.float64).reshape(n_classes, -1).sum(axis=1)


def threshold_free(target, scored: Scored, point, val: Scored | None, train_counts) -> dict:
    """The threshold-free metrics of one group split at `point` (metrics.threshold_free_metrics);
    the biases are chosen on `val` (the target's val split, scored at the same point), never on the
    split itself, and the label-free one matches the training split's class shares."""
    group = target.group(scored.y, scored.attribute).numpy()
    val_scores = None
    if val is not None:
        val_scores = (val.logits[point].numpy(), val.y.numpy(), target.group(val.y, val.attribute).numpy())
    return threshold_free_metrics(scored.logits[point].numpy(), scored.y.numpy(), group, target.n_groups,
                                  target.n_attributes, val_scores, class_prior(train_counts, len(target.label_names)))


def evaluate_points(model, heads: dict, targets: dict, loaders: dict, device, train_counts, load=None,
                    autocast_dtype=None, drift=None) -> dict:
    """{point: {split: metrics}} of every scoring point (see predict_points) on every split; with
    `drift` (a DriftMeter of the target), each split's metrics hold its `spuriosity_drift`. A group
    target's splits also hold their threshold-free metrics (`threshold_free`), the biases chosen on
    its val split for every split but val itself."""
    out = {point: {} for point in heads}
    grouped = {}
    for split, target in targets.items():
        if drift is not None:
            drift.reset()
        scored = predict_points(model, heads, target, loaders[split], device, load, autocast_dtype, drift,
                                keep_logits=bool(target.group_names))
        for point, pred in scored.preds.items():
            out[point][split] = split_metrics(target, pred, scored.y, scored.attribute, train_counts)
            if drift is not None:
                out[point][split]["spuriosity_drift"] = drift.record(point)
        if target.group_names:
            grouped[split] = (target, scored)
    for split, (target, scored) in grouped.items():
        val = grouped[VAL][1] if split != VAL and VAL in grouped else None
        for point in heads:
            out[point][split].update(threshold_free(target, scored, point, val, train_counts))
    return out


def evaluate_splits(model, head, targets: dict, loaders: dict, device, train_counts, autocast_dtype=None) -> dict:
    """{split: metrics} of the model's current weights with one head."""
    return evaluate_points(model, {None: head}, targets, loaders, device, train_counts,
                           autocast_dtype=autocast_dtype)[None]
