"""K posterior samples of a minibatch, their densities, and the signal a bound hands an estimator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from .free_bits import FreeBits
from .reductions import Reduction


@dataclass
class Draw:
    """K samples z_k ~ q(z|x) for a minibatch x (B, *x_shape), and their densities.

    q: batch (B,), event (D,); z (K, B, D); log_px_z (K, B). z is reparameterized
    (``rsample``) for pathwise estimators and a plain, detached draw for the score function.
    ``free_bits`` is the bound's :class:`FreeBits` when it floors the KL (estimators keep
    its mask); ``baseline_state`` is the score-function baseline's module, if it keeps one.
    """

    model: Any
    x: torch.Tensor
    q: Distribution
    z: torch.Tensor
    log_px_z: torch.Tensor
    estimator: Any
    baseline_state: nn.Module | None = None
    free_bits: FreeBits | None = None

    def log_pz(self) -> torch.Tensor:
        """log p(z_k), (K, B)."""
        return self.model.prior().log_prob(self.z)

    def q_stop(self) -> Distribution:
        """q(z|x) with the inference networks' weights detached (no path to the encoder's weights)."""
        return self.model.posterior(self.x, stop=True)

    def log_q(self, stop: bool = False) -> torch.Tensor:
        """log q(z_k|x), (K, B); with ``stop`` the parameters of q are detached (z is not)."""
        return (self.q_stop() if stop else self.q).log_prob(self.z)

    def log_ratio(self, stop: bool = False) -> torch.Tensor:
        """log p(z_k) - log q(z_k|x), (K, B): under free bits only the groups above the floor."""
        total = self.log_pz() - self.log_q(stop)
        if self.free_bits is None:
            return total
        per_dim = None
        model, q = self.model, self.q_stop() if stop else self.q
        if self.free_bits.layered:
            per_dim = model.log_ratio_groups(q, self.z)
        elif self.free_bits.group is not None:
            per_dim = model.log_prob_per_dim(model.prior(), self.z) - model.log_prob_per_dim(q, self.z)
        return self.free_bits.active(per_dim, total)


def draw(model, x: torch.Tensor, q: Distribution, k: int, estimator, baseline_state: nn.Module | None = None) -> Draw:
    """Draw z (K, B, D) from q = q(z|x) as ``estimator`` needs it, and score log p(x|z) of x (B, *x_shape)."""
    z = q.rsample((k,)) if estimator.pathwise else q.sample((k,))  # (K, B, D)
    return Draw(model, x, q, z, model.likelihood(z).log_prob(x), estimator, baseline_state)


@dataclass
class Signal:
    """What a bound hands an estimator for one draw: value = reduction(v) - penalty.

    Analytic KL with a closed form (the ELBO, most families): v_k = log p(x|z_k) and
    penalty = beta KL (floored per group under free bits). Otherwise v_k = log p(x|z_k) +
    beta (log p(z_k) - log q(z_k|x)) (the groups above the floor under free bits) and the
    penalty is beta times the floors of the groups below. v (K, B); penalty (B,) or 0-dim.
    """

    draw: Draw
    reduction: Reduction
    beta: float | torch.Tensor  # a tensor (M, 1): one beta per member of a stack
    v: torch.Tensor
    penalty: torch.Tensor | float

    def value(self) -> torch.Tensor:
        """The bound per example, (B,)."""
        return self.reduction.value(self.v) - self.penalty

    def stopped(self) -> torch.Tensor:
        """v in its sampled form with q's parameters detached in log q, (K, B) (STL, DReG)."""
        return self.draw.log_px_z + self.beta * self.draw.log_ratio(stop=True)

    def floor(self) -> torch.Tensor | float:
        """The constant part of the penalty in the sampled form: beta times the floors below."""
        return 0.0 if self.draw.free_bits is None else self.beta * self.draw.free_bits.floor_part()
