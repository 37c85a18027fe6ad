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

