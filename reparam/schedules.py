"""Learning-rate schedules: the rate as a pure function of training progress.

A schedule maps progress ``t = step / total_steps`` in [0, 1] to a rate that starts at
``lr`` (t = 0) and reaches ``lr_final`` (t = 1). It depends on the global step alone, so a
resumed run recomputes its rate instead of storing scheduler state and stays bit for bit
identical. Resuming with more epochs stretches the schedule over the new total: the rate
jumps to its value at the new, smaller ``t`` and decays again to ``lr_final``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .config import TrainConfig

Schedule = Callable[[float, float, float], float]


def constant(lr: float, lr_final: float, t: float) -> float:
    """lr throughout (``lr_final`` unused)."""
    return lr


def cosine(lr: float, lr_final: float, t: float) -> float:
    """lr_final + (lr - lr_final) (1 + cos(pi t)) / 2: SGDR without restarts (Loshchilov & Hutter 2017)."""
    return lr_final + (lr - lr_final) * 0.5 * (1.0 + math.cos(math.pi * t))


def exponential(lr: float, lr_final: float, t: float) -> float:
    """lr (lr_final / lr) ** t: a constant factor per step; needs lr_final > 0."""
    return lr * (lr_final / lr) ** t


SCHEDULES: dict[str, Schedule] = {"constant": constant, "cosine": cosine, "exponential": exponential}


def lr_at(cfg: "TrainConfig", step: int, total_steps: int, rollbacks: int = 0) -> float:
    """The rate at global ``step`` of ``total_steps``, times ``lr_backoff ** rollbacks``.

    t is clamped to [0, 1]: past the last step the rate stays at ``lr_final``.
    """
    t = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return SCHEDULES[cfg.lr_schedule](cfg.lr, cfg.lr_final, t) * cfg.lr_backoff**rollbacks
