"""Softmax-Gaussian latents matched to a Dirichlet prior (Srivastava & Sutton 2017, ProdLDA)."""

from __future__ import annotations

import torch
from torch.distributions import Independent, Normal

from .base import Family, register
from .beta import check_positive
from .dirichlet import check_simplex_dim
from .gaussian import DiagonalNormal


@register("dirichlet-laplace")
class DirichletLaplace(Family):
    """The Laplace approximation of a Dirichlet in the softmax basis.

    The latent is h in R^D; the decoder sees softmax(h), a point of the simplex.
    Srivastava & Sutton (2017, "Autoencoding Variational Inference for Topic Models",
    sec. 3.2, after MacKay 1998) approximate Dirichlet(alpha) by the Gaussian over h with
        mu_k = log alpha_k - (1/D) sum_i log alpha_i,
        sigma_k^2 = (1/alpha_k)(1 - 2/D) + (1/D^2) sum_i 1/alpha_i,
    which for the symmetric prior alpha_k = alpha0 is N(0, (1 - 1/D) / alpha0 I).
    q(h|x) = N(loc, diag(exp(logvar))) is location-scale (the Gaussian trick); the KL
    between the two diagonal Gaussians is closed form and factorizes over dimensions.
    The encoder emits ``2 * dim`` numbers: loc, then logvar. ``dim`` must be >= 2.
    """

    n_params = 2

    def __init__(self, dim: int, *, alpha0: float = 1.0):
        super().__init__(dim)
        check_simplex_dim(self.name, dim)
        self.alpha0 = check_positive("alpha0", alpha0)

    def posterior(self, raw: torch.Tensor) -> DiagonalNormal:
        loc, logvar = self.split(raw)  # (*batch, D) each
        return DiagonalNormal(loc, logvar)

    def prior(self) -> Independent:
        var = (1 - 1 / self.dim) / self.alpha0
        return Independent(Normal(self._full(0.0), self._full(var**0.5), validate_args=False), 1)

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        """softmax(h): (*batch, D) on the simplex."""
        return torch.softmax(z, dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, alpha0={self.alpha0:g}"
