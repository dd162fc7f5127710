"""Laplace latents: location-scale reparameterization with heavier tails than the Gaussian."""

from __future__ import annotations

import torch
from torch.distributions import Independent, Laplace

from ..numerics import positive
from .base import Family, register


@register("laplace")
class LaplaceFamily(Family):
    """q(z|x) = prod_d Laplace(loc_d, scale_d), p(z) = prod_d Laplace(0, 1).

    The encoder emits ``2 * dim`` numbers: loc, then a raw scale mapped by
    softplus + floor. Reparameterized by the inverse CDF: u ~ U(-1/2, 1/2),
    z = loc - scale * sign(u) * log(1 - 2|u|) (torch's ``Laplace.rsample``).
    KL per dimension, closed form (torch), with r = |loc| / scale:
    KL = log(1 / scale) + scale * exp(-r) + |loc| - 1.
    """

    n_params = 2

    def posterior(self, raw: torch.Tensor) -> Independent:
        loc, raw_scale = self.split(raw)  # (*batch, D) each
        return Independent(Laplace(loc, positive(raw_scale), validate_args=False), 1)

    def prior(self) -> Independent:
        return Independent(Laplace(self._full(0.0), self._full(1.0), validate_args=False), 1)
