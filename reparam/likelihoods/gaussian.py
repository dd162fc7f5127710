"""Gaussian pixels: a mean from the decoder, a scale learned per pixel or fixed."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from ..errors import ConfigError
from ..numerics import positive
from .base import Head, register


@register("gaussian")
class GaussianHead(Head):
    """Independent Normal pixels: mean from the decoder, scale learned per pixel or fixed.

    ``scale="learned"`` keeps one free parameter per pixel (softplus, floored at
    ``min_scale`` so constant pixels cannot drive the density to infinity); a positive
    number fixes the scale.
    """

    def __init__(self, x_shape, *, scale: float | str = "learned", min_scale: float = 0.01):
        super().__init__(x_shape)
        if not (isinstance(min_scale, (int, float)) and min_scale > 0):
            raise ConfigError(f"likelihood.min_scale must be a positive number, got {min_scale!r}")
        self.min_scale = float(min_scale)
        self.raw_scale: nn.Parameter | None
        if scale == "learned":
            self.raw_scale = nn.Parameter(torch.full(self.x_shape, 0.5413))  # softplus -> ~1
            self.fixed = None
        elif isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0:
            self.raw_scale = None
            self.fixed = float(scale)
        else:
            raise ConfigError(f"likelihood.scale must be 'learned' or a positive number, got {scale!r}")

    def scale(self) -> torch.Tensor | float:
        if self.fixed is not None:
            return self.fixed
        assert self.raw_scale is not None  # learned: __init__ made the parameter
        return positive(self.raw_scale, floor=self.min_scale)

    def forward(self, raw: torch.Tensor) -> Distribution:
        loc = self._unflatten(raw)
        scale = torch.as_tensor(self.scale(), dtype=loc.dtype, device=loc.device).expand_as(loc)
        return Independent(Normal(loc, scale, validate_args=False), len(self.x_shape))

    def mean(self, raw: torch.Tensor) -> torch.Tensor:
        return self._unflatten(raw)
