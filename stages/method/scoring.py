"""How a run is scored: its classifier head (its own linear head, else the zero-shot head of its
text encoder), WiSE-FT's weight interpolation, predictions and each split's metrics.

Shared by the evaluate stage and fine-tuning's val selection. `target` is a data set's split as
stages.datasets opens it (a ClassificationSet: its `predict` maps head logits to its labels, its
`group` gives each sample's group).
"""

from __future__ import annotations

import numpy as np
import torch

from .metrics import group_metrics
from .zeroshot import LinearHead, encode_images, zeroshot_weights


@torch.no_grad()
def predict(model, head, target, loader, device, autocast_dtype=None):
    """Predicted labels (in the target's label space) with labels and attributes."""
    model.eval()
    feats, y, attribute = encode_images(model, loader, device, desc=f"encode {target.name} {target.split}",
                                        autocast_dtype=autocast_dtype)
    logits = head(feats.to(device)).float()
    return target.predict(logits).cpu(), y, attribute


def zeroshot_head(model, tokenizer, classnames, templates, device):
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
    return {k: ((1 - alpha) * theta0[k] + alpha * v) if v.is_floating_point() else v for k, v in theta1.items()}


def split_metrics(target, pred, y, attribute, train_counts) -> dict:
    """Accuracy of one split, and for a group-shift set its group metrics."""
    out = {"accuracy": 100 * float((pred == y).float().mean()), "n": len(y)}
    if target.group_names:
        group = target.group(y, attribute).numpy()
        # the literature weights by the training groups; a set without a train split by its own
        counts = train_counts if train_counts is not None else np.bincount(group, minlength=target.n_groups)
        out.update(group_metrics(pred.numpy(), y.numpy(), group, target.n_groups, counts))
    return out


def evaluate_splits(model, head, targets: dict, loaders: dict, device, train_counts, autocast_dtype=None) -> dict:
    out = {}
    for split, target in targets.items():
        pred, y, attribute = predict(model, head, target, loaders[split], device, autocast_dtype)
        out[split] = split_metrics(target, pred, y, attribute, train_counts)
    return out
