"""Dirichlet latents on the simplex, reparameterized by implicit gradients (Figurnov et al. 2018)."""

from __future__ import annotations

import torch
from torch.distributions import Dirichlet

from ..errors import ConfigError
from ..numerics import positive
from . import register
from .base import Family
from .beta import check_positive


def check_simplex_dim(name: str, dim: int) -> None:
    if dim < 2:
        raise ConfigError(f"latent.family={name} needs latent.dim >= 2 (a simplex of dimension 1 is a single point), got {dim}")


@register("dirichlet")
class DirichletFamily(Family):
    """q(z|x) = Dirichlet(alpha(x)), p(z) = Dirichlet(alpha0 * 1), z on the simplex in R^D.

    The encoder emits ``dim`` raw numbers, mapped to concentrations by softplus + floor.
    torch draws z = g / sum(g) with g_d ~ Gamma(alpha_d, 1) and differentiates it
    implicitly (Figurnov, Mohamed & Mnih 2018; Jankowiak & Obermeyer 2018), so the
    gradient is exact up to torch's numerical approximation of dF/d alpha.
    KL, closed form: log Gamma(a0) - sum log Gamma(a_d) - log Gamma(D alpha0)
    + D log Gamma(alpha0) + sum (a_d - alpha0)(psi(a_d) - psi(a0)), a0 = sum a_d.
    The D coordinates sum to one, so ``kl_per_dim`` is None. ``dim`` must be >= 2.
    """

    n_params = 1

    def __init__(self, dim: int, *, alpha0: float = 1.0):
        super().__init__(dim)
        check_simplex_dim(self.name, dim)
        self.alpha0 = check_positive("alpha0", alpha0)

    def posterior(self, raw: torch.Tensor) -> Dirichlet:
        (raw_alpha,) = self.split(raw)  # (*batch, D)
        return Dirichlet(positive(raw_alpha), validate_args=False)

    def prior(self) -> Dirichlet:
        return Dirichlet(self._full(self.alpha0), validate_args=False)

    def traverse(self, point: torch.Tensor, d: int, steps: int) -> torch.Tensor:
        """Move along the simplex: z_d sweeps (0.02, 0.98), the rest keep their proportions."""
        t = torch.linspace(0.02, 0.98, steps, dtype=point.dtype, device=point.device).unsqueeze(-1)
        rest = point.clone()
        rest[d] = 0
        rest = rest / rest.sum().clamp_min(1e-12)  # (D,), sums to one without d
        z = (1 - t) * rest  # (steps, D)
        z[:, d] = t.squeeze(-1)
        return z

    def constrain(self, z: torch.Tensor) -> torch.Tensor:
        """Onto the open simplex: negative parts cut to a tiny floor, then renormalized."""
        z = z.clamp_min(torch.finfo(z.dtype).eps)
        return z / z.sum(-1, keepdim=True)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, alpha0={self.alpha0:g}"
