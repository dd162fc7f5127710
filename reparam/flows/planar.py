"""Planar flows (Rezende & Mohamed 2015), amortized: every step's parameters come from the encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Flow, register


@register("planar")
class Planar(Flow):
    """K planar steps f(z) = z + u^ tanh(w^T z + b), with u, w (D,) and b per example and step.

    Invertibility needs w^T u^ >= -1 (Rezende & Mohamed 2015, appendix A.1): u^ = u +
    (m(w^T u) - w^T u) w / |w|^2 with m(a) = -1 + softplus(a), so w^T u^ = m(w^T u) > -1.
    log |det df/dz| = log |1 + u^T psi(z)|, psi = tanh'(w^T z + b) w, and since
    tanh' in (0, 1], 1 + u^T psi = (1 - tanh') + tanh' softplus(w^T u) > 0. The encoder
    emits (2 D + 1) numbers per step.
    """

    #: every step's u, w, b are encoder outputs: on MNIST (BENCHMARKS.md, "flows", 3 seeds) planar-4
    #: scored 8.12 ± 0.82 nats worse than no flow with He's start, 1.12 ± 0.36 better with torch's
    auto_init = "torch"

    @property
    def raw_size(self) -> int:
        return self.steps * (2 * self.dim + 1)

    def forward(self, z0: torch.Tensor, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, z = self.dim, z0
        log_det = torch.zeros(z0.shape[:-1], dtype=z0.dtype, device=z0.device)  # (*S, B)
        for params in raw.unflatten(-1, (self.steps, 2 * d + 1)).unbind(-2):  # each (B, 2D + 1)
            u, w, b = params[..., :d], params[..., d : 2 * d], params[..., 2 * d :]
            wu = (w * u).sum(-1, keepdim=True)  # (B, 1)
            u_hat = u + (F.softplus(wu) - 1 - wu) * w / (w * w).sum(-1, keepdim=True).clamp_min(1e-12)
            h = torch.tanh((w * z).sum(-1, keepdim=True) + b)  # (*S, B, 1)
            z = z + u_hat * h
            slope = 1 - h * h  # tanh'
            log_det = log_det + torch.log((1 - slope) + slope * F.softplus(wu)).squeeze(-1)
        return z, log_det
