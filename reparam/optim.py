"""How parameters move: Adam, and the learning rate as a pure function of training progress.

A schedule maps progress ``t`` in [0, 1] to a rate that starts at ``lr`` (t = 0) and
reaches ``lr_final`` (t = 1). Progress is ``step / total_steps``, or under a wall-clock
budget the larger of that and ``seconds / budget`` (training ends at whichever limit comes
first, and the schedule with it). It depends on the global step (and the training clock,
which checkpoints carry) alone, so a resumed run recomputes its rate instead of storing
scheduler state and, without a budget, stays bit for bit identical. Resuming with more
epochs (or a longer budget) stretches the schedule over the new total: the rate jumps to
its value at the new, smaller ``t`` and decays again to ``lr_final``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator

import torch

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


def progress(step: int, total_steps: int, seconds: float = 0.0, budget: float = 0.0) -> float:
    """Training progress t in [0, 1]: step / total_steps, or with a budget (seconds > 0) the
    larger of that and seconds / budget; clamped, so past either end t stays 1."""
    t = step / max(total_steps, 1)
    if budget > 0:
        t = max(t, seconds / budget)
    return min(max(t, 0.0), 1.0)


def lr_at(cfg, step: int, total_steps: int, rollbacks: int = 0, seconds: float = 0.0, budget: float = 0.0) -> float:
    """The rate at global ``step`` of ``total_steps`` (and ``seconds`` into a ``budget``), times
    ``lr_backoff ** rollbacks``.

    ``cfg`` is the ``train`` config section (lr, lr_final, lr_schedule, lr_backoff). Past
    the end (``progress`` = 1) the rate stays at ``lr_final``.
    """
    t = progress(step, total_steps, seconds, budget)
    return SCHEDULES[cfg.lr_schedule](cfg.lr, cfg.lr_final, t) * cfg.lr_backoff**rollbacks


def make_optimizer(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam, with the fused kernel where this torch build has it (fewer passes over the weights)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - older torch or device without it
        return torch.optim.Adam(params, lr=lr, foreach=True)


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """An optimizer's state_dict as named tensors ``<param index>.<name>`` plus JSON-safe param groups."""
    sd = opt.state_dict()
    # cloned: a stack's step counters are views of one tensor, and a file holds no two views of one storage
    tensors = {f"{idx}.{name}": torch.as_tensor(value).clone() for idx, state in sd["state"].items() for name, value in state.items()}
    return tensors, sd["param_groups"]


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    """The inverse of ``optimizer_state``."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


class WeightAverage:
    """An exponential moving average of parameters (``train.ema``), evaluated and saved in their place.

    Polyak averaging in its exponential form: after the t-th update (1-based) the average moves
    toward the parameters by 1 - d_t with d_t = min(decay, (1 + t) / (10 + t)), the debiased
    decay of TensorFlow's ``ExponentialMovingAverage``, so a short run's average is not held at
    the initial weights. The update is one ``torch._foreach_lerp_``, the kernel
    ``torch.optim.swa_utils``' EMA uses.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], decay: float):
        self.owners = list(params)  # the parameters themselves: a stack points their .data at its weights after this is built
        self.decay = decay
        self.shadow = [p.clone() for p in self.params]
        self.updates = 0

    def weight(self) -> float:
        """The share 1 - d_t that the next update gives the current parameters."""
        t = self.updates + 1
        return 1.0 - min(self.decay, (1 + t) / (10 + t))

    @property
    def params(self) -> list[torch.Tensor]:
        """The parameters' current values, detached (views of the storage the optimizer updates in place)."""
        return [p.detach() for p in self.owners]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, self.params, self.weight())
        self.updates += 1

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The average in the parameters for the duration, the trained values back afterwards."""
        saved = [p.clone() for p in self.params]
        self.apply()
        try:
            yield
        finally:
            torch._foreach_copy_(self.params, saved)

    @torch.no_grad()
    def apply(self) -> None:
        """Put the average into the parameters for good (the end of training)."""
        torch._foreach_copy_(self.params, self.shadow)

    def state(self) -> tuple[dict[str, torch.Tensor], int]:
        return {str(i): s for i, s in enumerate(self.shadow)}, self.updates

    def load_state(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        if sorted(tensors, key=int) != [str(i) for i in range(len(self.shadow))]:
            raise ValueError(f"the average holds {len(tensors)} tensors, the model {len(self.shadow)} parameters")
        with torch.no_grad():
            for i, s in enumerate(self.shadow):
                s.copy_(tensors[str(i)])
        self.updates = updates
