"""Posterior-collapse diagnostics: KL per latent dimension and active units."""

from __future__ import annotations

import torch

#: Burda et al. (2016): unit u is active if Cov_x(E_q[u]) exceeds this.
ACTIVE_THRESHOLD = 0.01


@torch.inference_mode()
def kl_per_dim(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor | None:
    """Mean over x of KL(q(z_d|x) || p(z_d)) for each dimension d, (D,); None if not factorized."""
    total = None
    for start in range(0, len(x), batch_size):
        kl = model.family.kl_per_dim(model.posterior(x[start : start + batch_size]))
        if kl is None:
            return None
        total = kl.sum(0) if total is None else total + kl.sum(0)
    return total / len(x)


@torch.inference_mode()
def posterior_points(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The family's representative latent (the mean for most) for each example, (N, D)."""
    chunks = [model.family.point(model.posterior(x[s : s + batch_size])) for s in range(0, len(x), batch_size)]
    return torch.cat(chunks)


def activity(model, x: torch.Tensor) -> torch.Tensor:
    """Cov_x(E_q[z_d | x]) per dimension d, (D,)."""
    return posterior_points(model, x).double().var(0)


def active_units(model, x: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    return int((activity(model, x) > threshold).sum())
