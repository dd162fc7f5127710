"""The likelihood head contract and its registry.

A head maps the decoder's raw outputs for one example to p(x|z): raw of shape
(*batch, raw_size) -> a Distribution with batch_shape (*batch,) and event_shape ``x_shape``,
so ``log_prob(x)`` sums over pixels (never a mean over pixels, which would silently
reweight the KL term). A head registers itself with ``@register("name")``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Distribution

from ..errors import DataError
from ..registry import Registry

REGISTRY: Registry = Registry("likelihood")
register = REGISTRY.register


class Head(nn.Module):
    """Base class: ``raw_size`` numbers from the decoder per example -> p(x|z)."""

    name: str = ""
    n_params: int = 1
    #: Whether the head takes a table's column kinds (``likelihoods.get(..., columns=...)``).
    takes_columns: bool = False

    def __init__(self, x_shape: tuple[int, ...]):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.n_pixels = math.prod(self.x_shape)

    @property
    def raw_size(self) -> int:
        return self.n_pixels * self.n_params

    def _unflatten(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.unflatten(-1, self.x_shape)

    def forward(self, raw: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def check_data(self, x: torch.Tensor, what: str) -> None:
        """Raise DataError if ``x`` lies outside this likelihood's support."""

    def mean(self, raw: torch.Tensor) -> torch.Tensor:
        """The image a decoder output stands for (used for pictures)."""
        return self.forward(raw).mean

    def raw_for_mean(self, mean: torch.Tensor) -> torch.Tensor | None:
        """Decoder outputs (raw_size,) whose p(x|z) has the mean image ``mean`` (*x_shape), where
        one follows from the mean alone; None otherwise (``reparam.model.init.output_bias``)."""
        return None


def check_unit(x: torch.Tensor, what: str, kind: str) -> None:
    """DataError unless every value of x lies in [0, 1]."""
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"{what} holds values in [{lo:g}, {hi:g}], outside [0, 1] that {kind} "
            "likelihood needs; rescale the data or use likelihood.name=gaussian"
        )
