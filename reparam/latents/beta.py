"""Beta latents on (0, 1)^D, reparameterized by implicit gradients (Figurnov et al. 2018)."""

from __future__ import annotations

import torch
from torch.distributions import Beta, Independent

from ..errors import ConfigError
from ..numerics import clamp_probs, positive
from . import register
from .base import Family


def check_positive(key: str, value: float) -> float:
    """``value`` as a float if it is a number > 0, else ConfigError naming ``latent.<key>``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"latent.{key} must be a number > 0, got {value!r}")
    return float(value)


class UnitIntervalFamily(Family):
    """Shared by families on (0, 1)^D with a Beta(prior_alpha, prior_beta) prior."""

    n_params = 2

    def __init__(self, dim: int, *, prior_alpha: float = 1.0, prior_beta: float = 1.0):
        super().__init__(dim)
        self.prior_alpha = check_positive("prior_alpha", prior_alpha)
        self.prior_beta = check_positive("prior_beta", prior_beta)

    def concentrations(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(*batch, 2 D) -> (a, b), each (*batch, D), softplus + floor."""
        raw_a, raw_b = self.split(raw)
        return positive(raw_a), positive(raw_b)

    def prior(self) -> Independent:
        a, b = self._full(self.prior_alpha), self._full(self.prior_beta)
        return Independent(Beta(a, b, validate_args=False), 1)

    def traverse(self, point: torch.Tensor, d: int, steps: int) -> torch.Tensor:
        """Sweep z_d across (0, 1) (from 0.02 to 0.98), the other coordinates at ``point``."""
        z = point.expand(steps, self.dim).clone()  # (steps, D)
        z[:, d] = torch.linspace(0.02, 0.98, steps, dtype=point.dtype, device=point.device)
        return z

    def constrain(self, z: torch.Tensor) -> torch.Tensor:
        """Into the open unit interval, [eps, 1 - eps] per coordinate."""
        return clamp_probs(z)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, prior=Beta({self.prior_alpha:g}, {self.prior_beta:g})"


@register("beta")
class BetaFamily(UnitIntervalFamily):
    """q(z|x) = prod_d Beta(a_d, b_d), p(z) = prod_d Beta(prior_alpha, prior_beta).

    The encoder emits ``2 * dim`` raw numbers, mapped to a, b by softplus + floor.
    A Beta has no location-scale form; torch draws it through Gamma variables and
    differentiates the sample implicitly, dz/da = -(dF/da)(z) / q(z) with F the CDF
    (Figurnov, Mohamed & Mnih 2018, "Implicit Reparameterization Gradients"). KL per
    dimension is closed form:
    KL = log B(pa, pb) - log B(a, b) + (a - pa) psi(a) + (b - pb) psi(b)
         + (pa + pb - a - b) psi(a + b).
    """

    def posterior(self, raw: torch.Tensor) -> Independent:
        a, b = self.concentrations(raw)  # (*batch, D) each
        return Independent(Beta(a, b, validate_args=False), 1)
