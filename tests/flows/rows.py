"""The flow table: one row per registered flow (``latent.flow``), with its own references.

Every row is checked against the same independent references: log |det dz/dz0| against the
log |det| of the Jacobian that ``torch.autograd.functional.jacobian`` computes in float64, at
random and at extreme parameters, with a positive determinant (each step invertible and
orientation-preserving); the flow posterior's log q(z) against the change of variables
log q0(z0) - log |det J(z0)|, and normalized (E_q[p(z) / q(z)] = 1). A row's ``start``
states what the freshly built flow does, where it claims anything. The tests never branch
on a flow's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from reparam import flows

Z = 4.0  # standard errors allowed by every statistical check


@dataclass
class Start:
    """What a new flow does to z0 (*S, B, D) with ``steps`` steps in D dims: the expected z and
    log |det| (*S, B), to within ``atol``; ``why`` says where the claim comes from."""

    z: Callable[[torch.Tensor, int], torch.Tensor]
    log_det: Callable[[torch.Tensor, int], torch.Tensor]
    atol: float
    why: str


@dataclass
class Row:
    flow: str
    perturb: float  # how far the global weights move from their start, so the checks have teeth
    extreme: float  # the scale of the encoder's raw numbers (and weights) at the extreme check
    start: Start | None = None
    no_start: str = ""  # why the row claims nothing about a new flow

    def build(self, dim: int = 3, steps: int = 3, seed: int = 0, scale: float = 1.0) -> tuple[flows.Flow, torch.Tensor]:
        """The flow in float64 with its global weights moved by ``perturb * scale`` N(0, 1), and raw (2, raw_size) ~ N(0, scale^2)."""
        torch.manual_seed(seed)
        flow = flows.get(self.flow, dim, steps).double()
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(self.perturb * scale * torch.randn_like(p))
        return flow, scale * torch.randn(2, flow.raw_size, dtype=torch.float64)


GATE = torch.sigmoid(torch.tensor(1.5, dtype=torch.float64))

ROWS = [
    Row("planar", perturb=0.0, extreme=6.0, no_start="every step's u, w, b come from the encoder: no start of its own"),
    # the identity-start IAF's exp(s) grows fast: 0.1 already moves z by ~0.25 and log |det| by ~0.2
    Row("iaf", perturb=0.1, extreme=3.0, start=Start(lambda z0, k: z0, lambda z0, k: torch.zeros(z0.shape[:-1]), 0.0,
                                                     "the MADEs' output layers start at zero (the authors' released code)")),  # fmt: skip
    Row("iaf_gated", perturb=0.5, extreme=3.0,
        start=Start(lambda z0, k: GATE**k * z0, lambda z0, k: k * z0.shape[-1] * torch.log(GATE) * torch.ones(z0.shape[:-1]), 0.05,
                    "the forget gate's bias of 1.5: each step multiplies z by sigmoid(1.5), up to the small m")),  # fmt: skip
]


def log_abs_det(flow: flows.Flow, z0: torch.Tensor, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sign, log |det dz/dz0|) of each example's Jacobian from autograd: z0 (B, D), raw (B, raw_size) -> (B,), (B,)."""
    signs, logs = [], []
    for b in range(len(z0)):
        jac = torch.autograd.functional.jacobian(lambda v, b=b: flow(v.unsqueeze(0), raw[b : b + 1])[0][0], z0[b])  # (D, D)
        sign, log = torch.linalg.slogdet(jac)
        signs.append(sign), logs.append(log)
    return torch.stack(signs), torch.stack(logs)

