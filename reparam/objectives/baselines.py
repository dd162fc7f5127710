"""Baselines for the score-function estimator (``objective.baseline``).

A baseline b is subtracted from each sample's learning signal v_k: A_k = v_k - b_k, which
leaves the gradient estimate unbiased as long as b_k does not depend on z_k. Registered:
``none``, ``moving_average``, ``nvil`` (a learned b(x), Mnih & Gregor 2014) and ``loo``
(leave-one-out over the K samples, VIMCO, Mnih & Rezende 2016). ``moving_average`` and
``nvil`` keep state: :func:`baseline_module` builds it, the training ``Objective`` module
owns it (so the optimizer trains it and checkpoints carry it), and draws hand it to the
baseline as ``Draw.baseline_state``.

Each baseline maps (draw, v (K, B), reduction) to (advantages A (K, B), an extra surrogate
term (B,) or 0.0); the :class:`~reparam.objectives.reductions.Reduction` says how the
bound combines the K values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .reductions import Reduction

if TYPE_CHECKING:
    from .draws import Draw


Baseline = Callable[["Draw", torch.Tensor, Reduction], tuple[torch.Tensor, torch.Tensor | float]]
BASELINES: Registry = Registry("objective.baseline", ordered=True)
BASELINE_MODULES: dict[str, type[nn.Module]] = {}


def register_baseline(name: str, module: type[nn.Module] | None = None) -> Callable[[Baseline], Baseline]:
    def deco(fn: Baseline) -> Baseline:
        BASELINES.register(name)(fn)
        if module is not None:
            BASELINE_MODULES[name] = module
        return fn

    return deco


def check_baseline(baseline: str, estimator: str, k: int) -> None:
    BASELINES.lookup(baseline)
    if baseline != "none" and estimator != "score":
        raise ConfigError(f"objective.baseline={baseline} applies to objective.estimator=score, not {estimator}")
    if baseline == "loo" and k < 2:
        raise ConfigError(f"objective.baseline=loo (leave-one-out) needs K > 1 samples (objective.k > 1), got k={k}")


class MovingAverage(nn.Module):
    """b = exponential moving average of the minibatch's mean learning signal (decay 0.9).

    Updated after use and only in training mode, so b never depends on the current z.
    """

    def __init__(self, x_shape: tuple[int, ...], decay: float = 0.9):
        super().__init__()
        self.decay = decay
        self.value: torch.Tensor
        self.register_buffer("value", torch.zeros(()))

    def update(self, target: torch.Tensor) -> None:
        if self.training:
            self.value.mul_(self.decay).add_((1 - self.decay) * target.detach().mean())


class NVIL(nn.Module):
    """b(x), an MLP x -> 100 tanh -> 1 (Mnih & Gregor 2014, section 3.3), (B, *x_shape) -> (B,).

    Trained by the same optimizer on (L(x) - b(x))^2, where L(x) is the per-example
    learning signal (the ELBO's mean_k v_k, or L_K). Its output bias plays the role of
    the paper's constant baseline; the paper's signal normalization is not used.
    """

    def __init__(self, x_shape: tuple[int, ...], hidden: int = 100):
        super().__init__()
        self.x_ndim = len(x_shape)
        self.net = nn.Sequential(nn.Linear(math.prod(x_shape), hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(-self.x_ndim)).squeeze(-1)


def baseline_module(baseline: str, x_shape: tuple[int, ...]) -> nn.Module | None:
    """The state a baseline keeps (to attach as ``model.baseline``), or None if it keeps none."""
    cls = BASELINE_MODULES.get(baseline)
    return None if cls is None else cls(tuple(x_shape))


def _module(d: Draw, baseline: str) -> nn.Module:
    module = d.baseline_state
    if not isinstance(module, BASELINE_MODULES[baseline]):
        raise ConfigError(
            f"objective.baseline={baseline} keeps state: pass baseline_state=baseline_module(...) "
            "(the training Objective module owns one)"
        )
    return module


@register_baseline("none")
def no_baseline(d: Draw, v: torch.Tensor, shape: Reduction):
    return shape.share(v), 0.0


@register_baseline("moving_average", MovingAverage)
def moving_average(d: Draw, v: torch.Tensor, shape: Reduction):
    module = cast(MovingAverage, _module(d, "moving_average"))
    advantage = shape.share(v - module.value)
    module.update(shape.value(v))
    return advantage, 0.0


@register_baseline("nvil", NVIL)
def nvil(d: Draw, v: torch.Tensor, shape: Reduction):
    b = _module(d, "nvil")(d.x)  # (B,)
    target = shape.value(v).detach()  # (B,)
    return shape.share(v - b.detach()), -((target - b) ** 2)


@register_baseline("loo")
def leave_one_out(d: Draw, v: torch.Tensor, shape: Reduction):
    """A_k = value(v) - value(v with v_k replaced by mean_{j != k} v_j) (Mnih & Rezende 2016).

    For the ELBO this is (v_k - mean_{j != k} v_j) / K; for the IWAE it is VIMCO's
    L_K - log mean(sum_{j != k} w_j + exp(mean_{j != k} log w_j)); any reduction works
    alike. The baseline of z_k uses the other samples only, so the estimate stays unbiased.
    """
    k = len(v)
    others = (v.sum(0, keepdim=True) - v) / (k - 1)  # (K, B)
    swapped = v.unsqueeze(0).repeat(k, 1, 1)  # (K, K, B): row k has v_k swapped out
    idx = torch.arange(k, device=v.device)
    swapped[idx, idx] = others
    return shape.value(v).unsqueeze(0) - shape.value(swapped, dim=1), 0.0
