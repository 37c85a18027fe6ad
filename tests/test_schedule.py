import math

import pytest

from stages.method.schedule import warmup_cosine_lr


def test_warmup_then_cosine_to_zero():
    lr, warmup, total = 1e-3, 4, 12
    assert [warmup_cosine_lr(s, lr, warmup, total) for s in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    # halfway through the cosine part: (1 + cos(pi / 2)) / 2 = 0.5
    assert warmup_cosine_lr(8, lr, warmup, total) == pytest.approx(0.5 * lr)
    assert warmup_cosine_lr(6, lr, warmup, total) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)) * lr)
    assert warmup_cosine_lr(total, lr, warmup, total) == pytest.approx(0.0)
    assert warmup_cosine_lr(total + 5, lr, warmup, total) == pytest.approx(0.0)  # clamped, never rises again


def test_the_peak_is_at_the_end_of_warmup_and_a_one_step_cosine_still_ends_at_zero():
    lr = 1e-3
    # step `warmup` is the first of the cosine: (1 + cos 0) / 2 = 1, the peak, never above base_lr
    assert warmup_cosine_lr(4, lr, 4, 12) == pytest.approx(lr)
    assert max(warmup_cosine_lr(s, lr, 4, 12) for s in range(13)) == pytest.approx(lr)
    # a cosine of one step (total = warmup + 1): base_lr at step `warmup`, 0 at `total`
    assert warmup_cosine_lr(2, lr, 2, 3) == pytest.approx(lr)
    assert warmup_cosine_lr(3, lr, 2, 3) == pytest.approx(0.0)
