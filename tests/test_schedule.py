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
