"""The learning-rate schedule shared by pre-training and fine-tuning."""

from __future__ import annotations

import math


def warmup_cosine_lr(step: int, base_lr: float, warmup: int, total: int) -> float:
    """Linear warm-up to base_lr over `warmup` steps, then cosine to 0 at `total` (as FLYP)."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * base_lr
