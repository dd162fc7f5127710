"""Full-covariance Gaussian latents: z = loc + L eps with a learned Cholesky factor L."""

from __future__ import annotations

import torch
from torch.distributions import MultivariateNormal

from ..numerics import positive
from .base import Family, register


@register("gaussian-full")
class GaussianFull(Family):
    """q(z|x) = N(loc, L L^T) with L lower triangular, p(z) = N(0, I), closed-form KL.

    The encoder emits ``dim + dim (dim + 1) / 2`` numbers per example: loc (D,), then the
    lower triangle of L in ``torch.tril_indices`` order (row by row). The diagonal of L
    goes through softplus + floor, so L is a valid Cholesky factor; off-diagonal entries
    are free. Reparameterization: z = loc + L eps, eps ~ N(0, I) (Kingma & Welling 2014,
    sec. 2.4; torch's ``MultivariateNormal.rsample``). KL(N(m, S) || N(0, I)) =
    1/2 (tr S + m^T m - D - log det S). The dimensions are coupled, so ``kl_per_dim``
    is None.

    Numerical limit: log q(z) needs L^{-1} (z - loc), whose float32 rounding error grows
    with the condition number of L. When off-diagonal entries dwarf a small diagonal
    (raw values of a few units at D >~ 10), log q(z) is finite but inaccurate; the
    closed-form KL to N(0, I) involves no inverse of L and stays accurate.
    """

    def __init__(self, dim: int):
        super().__init__(dim)
        rows, cols = torch.tril_indices(dim, dim)
        self._rows: torch.Tensor
        self._cols: torch.Tensor
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    @property
    def raw_size(self) -> int:
        return self.dim + self.dim * (self.dim + 1) // 2

    def scale_tril(self, raw_tril: torch.Tensor) -> torch.Tensor:
        """(*batch, D (D + 1) / 2) -> L (*batch, D, D), positive diagonal."""
        shape = raw_tril.shape[:-1] + (self.dim, self.dim)
        tril = raw_tril.new_zeros(shape)
        tril[..., self._rows, self._cols] = raw_tril
        diag = positive(tril.diagonal(dim1=-2, dim2=-1))
        return tril.tril(-1) + torch.diag_embed(diag)

    def posterior(self, raw: torch.Tensor) -> MultivariateNormal:
        if raw.shape[-1] != self.raw_size:
            raise ValueError(f"{self.name}: raw has {raw.shape[-1]} columns, expected {self.raw_size}")
        loc, raw_tril = raw[..., : self.dim], raw[..., self.dim :]
        return MultivariateNormal(loc, scale_tril=self.scale_tril(raw_tril), validate_args=False)

    def prior(self) -> MultivariateNormal:
        eye = torch.diag_embed(self._full(1.0))
        return MultivariateNormal(self._full(0.0), scale_tril=eye, validate_args=False)
