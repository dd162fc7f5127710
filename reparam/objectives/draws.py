"""K posterior samples of a minibatch and the densities every bound and estimator reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from .free_bits import FreeBits


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
        """q(z|x) with its parameters detached (no path to the encoder)."""
        with torch.no_grad():
            return self.model.posterior(self.x)

    def log_q(self, stop: bool = False) -> torch.Tensor:
        """log q(z_k|x), (K, B); with ``stop`` the parameters of q are detached (z is not)."""
        return (self.q_stop() if stop else self.q).log_prob(self.z)

    def log_ratio(self, stop: bool = False) -> torch.Tensor:
        """log p(z_k) - log q(z_k|x), (K, B): under free bits only the groups above the floor."""
        total = self.log_pz() - self.log_q(stop)
        if self.free_bits is None:
            return total
        per_dim = None
        if self.free_bits.group is not None:
            family, q = self.model.family, self.q_stop() if stop else self.q
            per_dim = family.log_prob_per_dim(self.model.prior(), self.z) - family.log_prob_per_dim(q, self.z)
        return self.free_bits.active(per_dim, total)

    def kl_uses_samples(self) -> bool:
        """True when the family's KL is a Monte Carlo estimate from z (no closed form)."""
        try:
            self.model.kl(self.q)
        except ValueError:
            return True
        return False


def draw(model, x: torch.Tensor, q: Distribution, k: int, estimator, baseline_state: nn.Module | None = None) -> Draw:
    """Draw z (K, B, D) from q = q(z|x) as ``estimator`` needs it, and score log p(x|z) of x (B, *x_shape)."""
    z = q.rsample((k,)) if estimator.pathwise else q.sample((k,))  # (K, B, D)
    return Draw(model, x, q, z, model.likelihood(z).log_prob(x), estimator, baseline_state)
