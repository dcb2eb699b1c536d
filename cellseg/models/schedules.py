"""Learning-rate annealing as a function of training progress in [0, 1].

Progress is the further of steps (``global_step`` over ``max_steps``, or over the steps that
``max_epochs`` makes) and wall time (``elapsed / max_time``), so a run bounded by
``trainer.max_epochs`` or ``trainer.max_time`` anneals fully too.
"""

from __future__ import annotations

import math


class Cosine:
    """Cosine from 1 down to ``final_factor``."""

    def __init__(self, final_factor: float = 0.01):
        self.final_factor = final_factor

    def __call__(self, progress: float) -> float:
        return self.final_factor + (1 - self.final_factor) * 0.5 * (1 + math.cos(math.pi * progress))


class Step:
    """Multiply by ``gamma`` at each milestone (fractions of training)."""

    def __init__(self, milestones: tuple[float, ...] = (0.5, 0.75), gamma: float = 0.1):
        self.milestones = tuple(milestones)
        self.gamma = gamma

    def __call__(self, progress: float) -> float:
        return self.gamma ** sum(progress >= m for m in self.milestones)


class Exponential:
    """Exponential decay reaching ``final_factor`` at the end of training."""

    def __init__(self, final_factor: float = 0.01):
        self.final_factor = final_factor

    def __call__(self, progress: float) -> float:
        return self.final_factor**progress


def warmup(progress: float, fraction: float, scale: float) -> float:
    """Warm-up for a learning rate scaled ``scale`` times for DDP (``hardware.lr_scaling``).

    A linear ramp from ``1 / scale`` (the single-process rate) to 1 over the first ``fraction``
    of training, as in Goyal et al. 2017: a large scaled rate from the first step can diverge.
    1 when nothing is scaled or ``fraction`` is 0.
    """
    if scale <= 1 or fraction <= 0 or progress >= fraction:
        return 1.0
    return (1 + (scale - 1) * progress / fraction) / scale
