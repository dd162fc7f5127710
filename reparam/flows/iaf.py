"""Inverse autoregressive flows (Kingma et al. 2016): MADE steps conditioned on a context from the encoder.

``iaf`` starts at the identity, as the authors' released code does (its autoregressive outputs
are scaled down so each step begins as z -> z); ``iaf_gated`` is the gated update of the paper's
text with its forget-gate bias of 1.5, which runs written before 0.3 used: every step then starts
by multiplying z by sigmoid(1.5) = 0.82, so four steps begin at 0.45 of the base draw. On MNIST
(BENCHMARKS.md, "flows": 8 epochs) the gated IAF-4 scored 5.65 nats worse than no flow, the
identity start 3.03 ± 0.37 better (3 seeds).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Flow, register


def made_masks(dim: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MADE masks (Germain et al. 2015) for inputs of degrees 1..D: (hidden, D) and (2 D, hidden).

    Hidden unit k has degree 1 + (k mod max(1, D - 1)); it sees input i iff deg_k >= i,
    and output d (for m and s alike) sees hidden k iff d > deg_k, so output d depends on
    inputs 1..d-1 only: the Jacobian of the outputs in z is strictly lower triangular.
    """
    deg_in = torch.arange(1, dim + 1)
    deg_h = 1 + torch.arange(hidden) % max(1, dim - 1)
    first = (deg_h.unsqueeze(1) >= deg_in.unsqueeze(0)).float()  # (H, D)
    second = (deg_in.unsqueeze(1) > deg_h.unsqueeze(0)).float()  # (D, H)
    return first, torch.cat([second, second])


class MADE(nn.Module):
    """z (*S, B, D), context h (B, C) -> (m, s), each (*S, B, D), output d a function of z_<d and h."""

    mask_in: torch.Tensor  # buffers (see __init__)
    mask_out: torch.Tensor

    def __init__(self, dim: int, context: int, hidden: int, s_bias: float = 0.0, out_scale: float = 0.0):
        super().__init__()
        first, second = made_masks(dim, hidden)
        self.register_buffer("mask_in", first, persistent=False)
        self.register_buffer("mask_out", second, persistent=False)
        self.inp = nn.Linear(dim, hidden)
        self.ctx = nn.Linear(context, hidden, bias=False)  # the context enters every hidden unit
        self.out = nn.Linear(hidden, 2 * dim)
        with torch.no_grad():  # m starts at 0 and s at s_bias, whatever z and h (out_scale 0: exactly)
            self.out.weight.mul_(out_scale)
            self.out.bias[dim:].fill_(s_bias)
            self.out.bias[:dim].zero_()

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.nn.functional.linear(z, self.inp.weight * self.mask_in, self.inp.bias) + self.ctx(h)
        out = torch.nn.functional.linear(torch.nn.functional.elu(a), self.out.weight * self.mask_out, self.out.bias)
        m, s = out.chunk(2, -1)
        return m, s


@register("iaf")
class IAF(Flow):
    """K IAF steps z <- m + exp(s) z, [m, s] = MADE_k(z, h) (Kingma et al. 2016, eq. 10).

    log |det| = sum s. Each MADE's output layer starts at zero, so m = s = 0 and every step
    starts as the identity (the authors' released code scales its outputs by 0.1 for the same
    start). The order of the dimensions is reversed between steps, so every dimension is
    updated by the others (and restored at the end). h (``dim`` numbers per example) comes from
    the encoder; each step's MADE (one masked hidden layer of ``4 dim`` ELU units) is a global weight.
    """

    made_options: dict = {}

    def __init__(self, dim: int, steps: int):
        super().__init__(dim, steps)
        self.made = nn.ModuleList(MADE(dim, dim, 4 * dim, **self.made_options) for _ in range(steps))

    def step(self, z: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's new z and its log |det| (*S, B)."""
        return m + torch.exp(s) * z, s.sum(-1)

    @property
    def raw_size(self) -> int:
        return self.dim

    def forward(self, z0: torch.Tensor, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z0
        log_det = torch.zeros(z0.shape[:-1], dtype=z0.dtype, device=z0.device)  # (*S, B)
        for k, made in enumerate(self.made):
            if k:
                z = z.flip(-1)  # a permutation: |det| = 1
            z, step_log_det = self.step(z, *made(z, raw))
            log_det = log_det + step_log_det
        if (self.steps - 1) % 2:  # back to the input's order of dimensions
            z = z.flip(-1)
        return z, log_det


@register("iaf_gated")
class GatedIAF(IAF):
    """K IAF steps z <- sigma z + (1 - sigma) m, sigma = sigmoid(s): the gated update of the
    paper's text (Kingma et al. 2016, eq. 14-15), log |det| = sum log sigma, with s starting
    at +1.5 (their forget-gate bias) and the MADEs' output weights at 0.01 of torch's start.
    Runs written before 0.3 with ``latent.flow=iaf`` used this flow and read back as it.
    """

    made_options = {"s_bias": 1.5, "out_scale": 0.01}

    def step(self, z: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate = torch.sigmoid(s)
        return gate * z + (1 - gate) * m, torch.nn.functional.logsigmoid(s).sum(-1)
