"""Diagonal Gaussian latents: the reparameterization trick of Kingma & Welling (2014)."""

from __future__ import annotations

import math

import torch
from torch.distributions import Independent, Normal

from ..numerics import scale_from_logvar
from .base import Family, register


class DiagonalNormal(Independent):
    """N(loc, diag(exp(logvar))) over the last dimension, with the trick spelled out.

    ``rsample`` draws eps ~ N(0, I) and returns z = loc + scale * eps with
    scale = exp(0.5 * logvar): all randomness sits in eps, so z is a deterministic,
    differentiable function of (loc, logvar) and gradients flow back to the encoder.
    """

    def __init__(self, loc: torch.Tensor, logvar: torch.Tensor):
        self.logvar = logvar
        super().__init__(Normal(loc, scale_from_logvar(logvar), validate_args=False), 1)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = torch.Size()) -> torch.Tensor:
        loc, scale = self.base_dist.loc, self.base_dist.scale  # (*batch, D)
        eps = torch.randn(self._extended_shape(sample_shape), dtype=loc.dtype, device=loc.device)
        return loc + scale * eps  # (*sample, *batch, D)

    def pairwise_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z_i | x_n) for every pair: z (M, D) against this batch (N,) -> (M, N), in float64.

        sum_d (z_d - mu_d)^2 / s_d^2 expands into [z^2, z] @ [-a/2, a mu]^T plus a per-n
        constant (a = 1 / s^2): one matrix product instead of an (M, N, D) table, which is
        what the aggregate posterior of ``diagnostics.mutual_information`` needs. Float64
        keeps the expansion's cancellation below 1e-9 nats.
        """
        loc, scale = self.base_dist.loc.double(), self.base_dist.scale.double()  # (N, D)
        a = scale.pow(-2)
        const = -0.5 * (loc.pow(2) * a).sum(-1) - scale.log().sum(-1) - 0.5 * loc.shape[-1] * math.log(2 * math.pi)  # (N,)
        z = z.double()
        return torch.cat([z.pow(2), z], -1) @ torch.cat([-0.5 * a, a * loc], -1).T + const  # (M, N)

    def expand(self, batch_shape, _instance=None):
        base = self.base_dist.expand(torch.Size(batch_shape) + self.event_shape)
        return Independent(base, 1)


@register("gaussian")
class Gaussian(Family):
    """q(z|x) = N(loc, diag(exp(logvar))), p(z) = N(0, I), closed-form KL.

    The encoder emits ``2 * dim`` numbers per example: loc, then logvar.
    """

    n_params = 2

    def posterior(self, raw: torch.Tensor) -> DiagonalNormal:
        loc, logvar = self.split(raw)  # (*batch, D) each
        return DiagonalNormal(loc, logvar)

    def prior(self) -> Independent:
        return Independent(Normal(self._full(0.0), self._full(1.0), validate_args=False), 1)
