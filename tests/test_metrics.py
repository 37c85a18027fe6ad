import numpy as np
import pytest

from stages.method.metrics import group_accuracies, group_metrics


def test_group_metrics_match_hand_computed_values():
    # groups:       0  0  0  0  1  1  2  2  3  3
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    group = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3, 3])
    pred = np.array([0, 0, 0, 1, 1, 0, 1, 0, 1, 1])
    # group accuracies: 3/4, 1/2, 1/2, 2/2; average 7/10
    train_counts = [60, 10, 10, 20]  # adjusted = (0.6*0.75 + 0.1*0.5 + 0.1*0.5 + 0.2*1.0)
    m = group_metrics(pred, y, group, 4, train_counts)
    assert m["group_accuracy"] == pytest.approx([75.0, 50.0, 50.0, 100.0])
    assert m["worst_group"] == pytest.approx(50.0)
    assert m["average"] == pytest.approx(70.0)
    assert m["adjusted_average"] == pytest.approx(100 * (0.45 + 0.05 + 0.05 + 0.2))
    assert m["group_size"] == [4, 2, 2, 2]


def test_empty_group_is_ignored_not_zero():
    accs = group_accuracies([0, 1], [0, 1], [0, 3], 4)
    assert np.isnan(accs[1]) and np.isnan(accs[2])
    m = group_metrics([0, 1], [0, 1], [0, 3], 4, [1, 1, 1, 1])
    assert m["worst_group"] == 100.0
    assert m["adjusted_average"] == 100.0
    assert m["group_accuracy"][1] is None


def test_train_counts_must_match_groups():
    with pytest.raises(ValueError, match="groups"):
        group_metrics([0], [0], [0], 4, [1, 2])


def test_groups_missing_at_the_end_are_nan_and_of_size_zero():
    # A split whose last two groups have no sample (a shift, a small val split): the arrays still
    # have one entry per group, not as many as the highest group present.
    accs = group_accuracies([0, 0], [0, 1], [0, 1], 4)
    assert accs.shape == (4,) and accs[:2].tolist() == [1.0, 0.0] and np.isnan(accs[2:]).all()
    m = group_metrics([0, 0], [0, 1], [0, 1], 4, [3, 1, 5, 5])
    assert m["group_size"] == [1, 1, 0, 0]
    assert m["group_accuracy"] == [100.0, 0.0, None, None]
    assert m["worst_group"] == 0.0 and m["average"] == 50.0
    # weights of the groups present only: (3 * 1 + 1 * 0) / (3 + 1)
    assert m["adjusted_average"] == 75.0



# ---------------------------------------------------------------------------------------------
# Threshold-free companions, on a two-class fixture whose head is offset by a known bias: every
# class-0 score lies below 1 and every class-1 score above it on val, so the right threshold on
# s = l_1 - l_0 is 1, not the raw head's 0. Groups 2y + a, of uneven sizes (2, 2, 3, 2).

from stages.method.metrics import (cross_group_auroc, label_free_bias, score_offset, threshold_free_metrics,  # noqa: E402
                                   val_chosen_bias)

VAL_S = {0: [-1.0, -0.6], 1: [0.2, 0.6], 2: [1.4, 1.8], 3: [2.2, 2.6]}
# on test the best threshold would be between 1.2 and 1.3 (worst group 66.7): one chosen on test
# would show there
TEST_S = {0: [-0.8, -0.4], 1: [0.4, 1.2], 2: [0.9, 1.3, 1.8], 3: [2.0, 2.4]}


def two_class(scores: dict):
    """(logits [N, 2] = [0, s], y, group) of {group: scores}."""
    s = np.array([v for g in sorted(scores) for v in scores[g]])
    group = np.array([g for g in sorted(scores) for _ in scores[g]])
    return np.stack([np.zeros_like(s), s], axis=1), group // 2, group


def test_the_bias_chosen_on_val_is_the_threshold_that_separates_val():
    logits, y, group = two_class(VAL_S)
    # sorted val scores -1, -.6, .2, .6 | 1.4, 1.8, 2.2, 2.6: the one 100% threshold is (0.6 + 1.4) / 2
    assert val_chosen_bias(logits, y, group, 4, 2) == pytest.approx([0.0, -1.0])
    assert val_chosen_bias(np.zeros((3, 3)), [0, 1, 2], [0, 2, 4], 6, 2) is None   # three classes: none


def test_the_label_free_bias_matches_the_training_class_shares_on_val_scores():
    logits, _, _ = two_class(VAL_S)
    # balanced classes: the median of the 8 val scores, (0.6 + 1.4) / 2 = 1.0
    assert label_free_bias(logits, [4, 4]) == pytest.approx([0.0, -1.0])
    # a third of class 1: the 2/3 quantile, position 7 * 2/3 = 4.667 between 1.4 and 1.8
    assert label_free_bias(logits, [8, 4])[1] == pytest.approx(-(1.4 + (2 / 3) * 0.4))
    # three classes, uneven shares 1/2, 1/3, 1/6 of 12 samples: each class predicted that often
    rng = np.random.default_rng(0)
    three = rng.normal(size=(12, 3))
    biases = label_free_bias(three, [3, 2, 1])
    assert np.bincount((three + biases).argmax(axis=1), minlength=3).tolist() == [6, 4, 2]


def test_threshold_free_metrics_are_the_hand_computed_ones():
    logits, y, group = two_class(TEST_S)
    val = two_class(VAL_S)
    train_counts = [6, 2, 1, 3]          # class shares 8 : 4
    m = threshold_free_metrics(logits, y, group, 4, 2, val, prior=[8, 4])
    # raw threshold 0: group 1 (scores .4, 1.2) is all wrong; worst group 0
    # val's threshold 1.0: group 1 1/2 right (1.2 is above), group 2 2/3 (0.9 is below): worst 50
    assert m["worst_group_val_bias"] == pytest.approx(50.0)
    # label-free threshold 1.6667: group 1 2/2, group 2 1/3 (only 1.8 above): worst 33.3
    assert m["worst_group_label_free"] == pytest.approx(100 / 3)
    # the closest pair of groups of different classes: group 2 over group 1, 5 of 6 pairs ordered
    assert m["cross_group_auroc"] == pytest.approx(5 / 6)
    means = [-0.6, 0.8, 4.0 / 3, 2.2]
    variances = [0.04, 0.16, ((0.9 - 4.0 / 3) ** 2 + (1.3 - 4.0 / 3) ** 2 + (1.8 - 4.0 / 3) ** 2) / 3, 0.04]
    assert m["score_offset"] == pytest.approx(np.mean(means) / np.sqrt(np.mean(variances)))
    # without val (the val split itself, or a target without one) nothing is chosen
    alone = threshold_free_metrics(logits, y, group, 4, 2, None, prior=train_counts)
    assert alone["worst_group_val_bias"] is None and alone["worst_group_label_free"] is None
    assert alone["cross_group_auroc"] == m["cross_group_auroc"]


def test_auroc_and_offset_ignore_the_threshold_and_the_scale():
    logits, y, group = two_class(TEST_S)
    shifted = logits + np.array([0.0, -5.0])        # any bias: the same ordering
    assert cross_group_auroc(3 * shifted, y, group, 4, 2) == pytest.approx(cross_group_auroc(logits, y, group, 4, 2))
    # the offset moves by the bias over the spread, and not with the scale
    assert score_offset(3 * logits, group, 4) == pytest.approx(score_offset(logits, group, 4))
    assert score_offset(shifted, group, 4) < 0 < score_offset(logits, group, 4)
    # ties count half: identical scores of two groups of different classes give 0.5
    tied = np.zeros((4, 2))
    assert cross_group_auroc(tied, [0, 0, 1, 1], [0, 1, 2, 3], 4, 2) == pytest.approx(0.5)
