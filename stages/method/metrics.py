"""Group-shift metrics: per-group, worst-group, average and adjusted average accuracy, and their
threshold-free companions (a bias chosen on val, a label-free bias, cross-group AUROC, the offset)."""

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


# ---------------------------------------------------------------------------------------------
# Threshold-free companions (docs/metrics.md). With two classes, worst-group accuracy hinges on one
# number, the bias between the two class prompts; these say what the scores hold apart from it.
# `logits` [N, C] are a head's logits in the target's label space; groups are group_index's
# (group // n_attributes is the group's class).


def predictions(logits, biases=None) -> np.ndarray:
    """argmax over classes of logits + biases (one bias per class; none: the raw head)."""
    logits = np.asarray(logits, dtype=np.float64)
    return (logits if biases is None else logits + np.asarray(biases, dtype=np.float64)).argmax(axis=1)


def _class_of_groups(n_groups: int, n_attributes: int) -> np.ndarray:
    return np.arange(n_groups) // n_attributes


def val_chosen_bias(logits, y, group, n_groups: int, n_attributes: int) -> np.ndarray | None:
    """Two classes: the biases (0, b) under which [l_1 - l_0 + b > 0] has the best worst-group
    accuracy on these (val) samples; of the thresholds that reach it, the one nearest the raw
    head's (b = 0). None for more classes (C - 1 biases fitted on val would fit val)."""
    logits, y, group = np.asarray(logits, dtype=np.float64), np.asarray(y), np.asarray(group)
    if logits.shape[1] != 2:
        return None
    s = logits[:, 1] - logits[:, 0]
    order = np.argsort(s, kind="stable")
    s_sorted, g_sorted = s[order], group[order]
    # threshold k (0..N): the k lowest scores are predicted class 0, the rest class 1
    below = np.zeros((len(s) + 1, n_groups))
    np.add.at(below[1:], (np.arange(len(s)), g_sorted), 1)
    below = below.cumsum(axis=0)                                   # [N + 1, G]: samples of g at or below k
    sizes = below[-1]
    present = sizes > 0
    cls = _class_of_groups(n_groups, n_attributes)
    correct = np.where(cls == 0, below, sizes - below)             # class 0 right below, class 1 above
    worst = (correct[:, present] / sizes[present]).min(axis=1)
    # a threshold is only a threshold between two distinct scores (or outside all of them)
    distinct = np.r_[True, s_sorted[1:] != s_sorted[:-1], True]
    worst = np.where(distinct, worst, -np.inf)
    best = np.flatnonzero(worst == worst.max())
    edges = np.r_[s_sorted[0] - 1.0, (s_sorted[:-1] + s_sorted[1:]) / 2, s_sorted[-1] + 1.0]
    t = edges[best[np.argmin(np.abs(edges[best]))]]
    return np.array([0.0, -t])


def label_free_bias(logits, prior, sweeps: int = 50) -> np.ndarray:
    """The biases under which the head predicts each class c on a share prior_c of these samples,
    read from the scores alone (no label): with two classes, the threshold at the (1 - prior_1)
    quantile of l_1 - l_0 (the median for balanced classes); with more, class by class until the
    shares hold (each step the same quantile rule against the best other class)."""
    logits = np.asarray(logits, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64) / np.sum(prior)
    biases = np.zeros(logits.shape[1])
    for _ in range(sweeps if logits.shape[1] > 2 else 1):
        for c in range(1 if logits.shape[1] == 2 else 0, logits.shape[1]):
            others = np.delete(logits + biases, c, axis=1).max(axis=1)
            margin = logits[:, c] - others                         # class c wins where margin + b_c > 0
            biases[c] = -np.quantile(margin, 1 - prior[c])
    return biases


def cross_group_auroc(logits, y, group, n_groups: int, n_attributes: int) -> float | None:
    """The lowest AUROC over pairs of groups of different classes a < b: the chance that a sample of
    a group of class b scores higher on l_b - l_a than one of a group of class a (ties count half).
    Waterbirds: the lowest is usually waterbirds on land against landbirds on water. None when no
    such pair has samples."""
    from scipy.stats import mannwhitneyu

    logits, group = np.asarray(logits, dtype=np.float64), np.asarray(group)
    cls = _class_of_groups(n_groups, n_attributes)
    worst = None
    for g in range(n_groups):
        for h in range(n_groups):
            a, b = cls[g], cls[h]
            if a >= b:
                continue
            score = logits[:, b] - logits[:, a]
            low, high = score[group == g], score[group == h]
            if len(low) and len(high):
                auc = mannwhitneyu(high, low).statistic / (len(high) * len(low))
                worst = auc if worst is None else min(worst, auc)
    return None if worst is None else float(worst)


def score_offset(logits, group, n_groups: int) -> float | None:
    """Two classes: where the decision threshold sits among the scores s = l_1 - l_0, as the mean
    over groups of each group's mean s, over the pooled within-group std (the root of the mean of
    the groups' variances). Negative: the head leans towards class 0. None for more classes."""
    logits, group = np.asarray(logits, dtype=np.float64), np.asarray(group)
    if logits.shape[1] != 2:
        return None
    s = logits[:, 1] - logits[:, 0]
    present = [g for g in range(n_groups) if (group == g).any()]
    means = [s[group == g].mean() for g in present]
    spread = np.sqrt(np.mean([s[group == g].var() for g in present]))
    return float(np.mean(means) / spread) if spread > 0 else None


def threshold_free_metrics(logits, y, group, n_groups: int, n_attributes: int, val=None, prior=None) -> dict:
    """The threshold-free companions of one split's worst-group accuracy, in percent (AUROC and
    offset as fractions): `worst_group_val_bias` (the bias chosen on `val`), `worst_group_label_free`
    (the bias matching `prior` on val's scores), `cross_group_auroc`, `score_offset`. `val`: (logits,
    y, group) of the target's val split, None for the val split itself or a target without one
    (then the two val-chosen values are None: nothing is chosen on a split it reports)."""
    def worst(biases):
        if biases is None:
            return None
        accs = group_accuracies(predictions(logits, biases), y, group, n_groups)
        return 100 * float(np.nanmin(accs))

    out = {"worst_group_val_bias": None, "worst_group_label_free": None,
           "cross_group_auroc": cross_group_auroc(logits, y, group, n_groups, n_attributes),
           "score_offset": score_offset(logits, group, n_groups)}
    if val is not None:
        val_logits, val_y, val_group = val
        out["worst_group_val_bias"] = worst(val_chosen_bias(val_logits, val_y, val_group, n_groups, n_attributes))
        n_classes = np.asarray(val_logits).shape[1]
        out["worst_group_label_free"] = worst(label_free_bias(val_logits, np.ones(n_classes) if prior is None
                                                              else prior))
    return out
