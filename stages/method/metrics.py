"""Group-shift metrics: per-group, worst-group, average and adjusted average accuracy."""

from __future__ import annotations

import numpy as np


def group_accuracies(pred, y, group, n_groups: int) -> np.ndarray:
    """Accuracy of each group; NaN for a group with no sample."""
    pred, y, group = (np.asarray(a) for a in (pred, y, group))
    correct = (pred == y).astype(float)
    hits = np.bincount(group, weights=correct, minlength=n_groups)
    counts = np.bincount(group, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def group_metrics(pred, y, group, n_groups: int, train_group_counts) -> dict:
    """All reported metrics, in percent.

    - worst_group: min over the groups present of the group's accuracy;
    - average: accuracy over all samples of the split (each sample counts once);
    - adjusted_average: group accuracies weighted by the *training* group proportions, the
      convention of the Waterbirds literature (Sagawa et al.), which weights the rare groups of
      a balanced test split as rarely as training saw them.
    """
    accs = group_accuracies(pred, y, group, n_groups)
    w = np.asarray(train_group_counts, dtype=float)
    present = ~np.isnan(accs)
    if w.shape != accs.shape:
        raise ValueError(f"train_group_counts has {w.size} groups, predictions {n_groups}")
    adjusted = float(np.sum(accs[present] * w[present]) / np.sum(w[present]))
    return {
        "worst_group": 100 * float(np.nanmin(accs)),
        "average": 100 * float(np.mean(np.asarray(pred) == np.asarray(y))),
        "adjusted_average": 100 * adjusted,
        "group_accuracy": [None if np.isnan(a) else 100 * float(a) for a in accs],
        "group_size": np.bincount(np.asarray(group), minlength=n_groups).tolist(),
    }
