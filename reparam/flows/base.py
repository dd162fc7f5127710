"""The flow contract, and the posterior a flow makes of a base family's q0."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, constraints

from ..registry import Registry

REGISTRY: Registry = Registry("latent.flow")
register = REGISTRY.register


class Flow(nn.Module):
    """K invertible steps on R^D whose per-example parameters come from the encoder.

    ``raw_size``: numbers the encoder emits per example for the flow (besides the base
    family's). ``forward(z0, raw)`` maps z0 (*S, B, D) with raw (B, raw_size) to
    (z (*S, B, D), sum over steps of log |det dz_k / dz_(k-1)| (*S, B)). Global weights
    (a MADE's) are the module's own parameters.
    """

    default_steps = 4
    #: the networks' start under ``model.init=auto`` where this flow's measurements asked for one
    #: (``reparam.model.init``); None: the model's own choice
    auto_init: str | None = None

    def __init__(self, dim: int, steps: int):
        super().__init__()
        self.dim, self.steps = dim, steps

    @property
    def raw_size(self) -> int:
        raise NotImplementedError

    def forward(self, z0: torch.Tensor, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"dim={self.dim}, steps={self.steps}"


class FlowPosterior(Distribution):
    """q(z|x) = q0 pushed through a flow: z = f(z0), z0 ~ q0, log q(z) = log q0(z0) - sum log |det|.

    The density is known at the posterior's own draws (the flow has no closed-form
    inverse in general): ``rsample``/``sample`` remember the last draw and its log
    density, which ``log_prob`` returns for that very tensor; any other value raises
    NotImplementedError. KL(q || p) is therefore always a Monte Carlo estimate from the
    draws. Shapes: q0 batch (B,), event (D,); raw (B, raw_size).
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, base: Distribution, flow: Flow, raw: torch.Tensor):
        self.base, self.flow, self.raw = base, flow, raw
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        z0 = self.base.rsample(sample_shape)  # (*S, B, D)
        z, log_det = self.flow(z0, self.raw)
        self._last = (z, self.base.log_prob(z0) - log_det)
        return z

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            z = self.rsample(sample_shape)
        assert self._last is not None  # set by rsample
        self._last = (z, self._last[1].detach())
        return z

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._last is None or value is not self._last[0]:
            raise NotImplementedError("a flow posterior's density is known at its own draws only (the flow has no closed-form inverse)")
        return self._last[1]

    def point(self, base_point: torch.Tensor) -> torch.Tensor:
        """A representative latent: the flow applied to the base family's point (B, D)."""
        return self.flow(base_point, self.raw)[0]
