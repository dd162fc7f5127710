"""The discretized logistic mixture of PixelCNN++ (Salimans et al. 2017) as a Distribution.

A pixel with C channels takes values on ``levels`` grey levels of [0, 1]. Internally the
values are mapped to y = 2x - 1 in [-1, 1], bins of width 2 / (levels - 1). Given
mixture component m, channel c is a logistic with scale s_mc and mean

    mu_mc + sum_{j<c} tanh(a_mcj) y_j          (linear coupling on earlier channels)

discretized: P(y) = sigma((y + h - mu) / s) - sigma((y - h - mu) / s), h = 1 / (levels - 1),
with the lowest bin taking all mass below it and the highest all mass above. The pixel's
probability is sum_m pi_m prod_c P_mc(y_c); the levels of each channel sum to one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints

from ..errors import ConfigError, DataError
from ..numerics import log1mexp, positive, uniform
from .base import Head, check_unit, register


def pixel_layout(x_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """(pixel grid, channels): (H, W, C) -> ((H, W), C); any other shape is grey, C = 1."""
    if len(x_shape) == 3:
        return tuple(x_shape[:2]), x_shape[2]
    return tuple(x_shape), 1


def discretized_logistic_log_prob(y: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor, levels: int) -> torch.Tensor:
    """log P(y) of one discretized logistic, y on the grid of [-1, 1]; broadcasts.

    Middle bins use sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - e^(b - a)), exact in
    log space (no cancellation when both CDFs are near 0 or 1).
    """
    h = 1.0 / (levels - 1)
    a, b = (y - mean + h) / scale, (y - mean - h) / scale
    middle = F.logsigmoid(a) + F.logsigmoid(-b) + log1mexp(b - a)
    low, high = F.logsigmoid(a), F.logsigmoid(-b)
    return torch.where(y < -1 + h, low, torch.where(y > 1 - h, high, middle))


class DiscretizedLogisticMixture(Distribution):
    """Per-pixel mixture of discretized logistics; event_shape is the image shape.

    logits (*batch, *grid, M); loc, scale (*batch, *grid, M, C); coeffs
    (*batch, *grid, M, C(C-1)/2) or None for C = 1. ``log_prob(x)`` takes x
    (*batch, *x_shape) in [0, 1] on the grid and returns (*batch,).
    """

    arg_constraints: dict = {}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, logits, loc, scale, coeffs, x_shape: tuple[int, ...], levels: int = 256):
        self.logits, self.loc, self.scale, self.coeffs, self.levels = logits, loc, scale, coeffs, levels
        self.grid, self.channels = pixel_layout(tuple(x_shape))
        batch_shape = logits.shape[: logits.ndim - len(self.grid) - 1]
        super().__init__(batch_shape, torch.Size(x_shape), validate_args=False)

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        """x (*, *x_shape) in [0, 1] -> y (*, *grid, 1, C) in [-1, 1], snapped to the grid."""
        k = (x * (self.levels - 1)).round()
        y = 2 * k / (self.levels - 1) - 1
        return y.reshape(*x.shape[: x.ndim - len(self.event_shape)], *self.grid, 1, self.channels)

    def _means(self, y: torch.Tensor) -> torch.Tensor:
        """Coupled means (*, *grid, M, C): channel c shifted by tanh(a) . y_{<c}."""
        means = [self.loc[..., 0].expand(torch.broadcast_shapes(self.loc.shape[:-1], y.shape[:-1]))]
        for c in range(1, self.channels):
            a = torch.tanh(self.coeffs[..., c * (c - 1) // 2 : c * (c + 1) // 2])  # (.., M, c)
            means.append(self.loc[..., c] + (a * y[..., :c]).sum(-1))
        return torch.stack(means, -1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        y = self._pixels(x)  # (*, *grid, 1, C)
        lp = discretized_logistic_log_prob(y, self._means(y), self.scale, self.levels).sum(-1)  # (*, *grid, M)
        lp = torch.logsumexp(lp + torch.log_softmax(self.logits, -1), -1)  # (*, *grid)
        return lp.flatten(-len(self.grid)).sum(-1)

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Component per pixel, then channels in order (each conditioned on the earlier ones)."""
        shape = torch.Size(sample_shape) + self.logits.shape
        gumbel = -torch.log(-torch.log(uniform(shape, self.logits)))
        pick = F.one_hot((self.logits + gumbel).argmax(-1), self.logits.shape[-1]).unsqueeze(-1)  # (*, M, 1)
        y = torch.zeros(*shape[:-1], 1, self.channels, dtype=self.loc.dtype, device=self.loc.device)
        for c in range(self.channels):
            u = uniform(y[..., 0].shape, y)
            draw = self._means(y)[..., c] + self.scale[..., c] * (torch.log(u) - torch.log1p(-u))  # (*, M)
            y[..., 0, c] = (draw * pick[..., 0]).sum(-1).clamp(-1, 1)
        return self._to_unit(y)

    def _to_unit(self, y: torch.Tensor) -> torch.Tensor:
        """y (*, *grid, 1, C) in [-1, 1] -> x (*, *x_shape) on the grid of [0, 1]."""
        x = ((y + 1) / 2 * (self.levels - 1)).round() / (self.levels - 1)
        return x.reshape(*x.shape[: x.ndim - len(self.grid) - 2], *self.event_shape)

    def plugin_mean(self) -> torch.Tensor:
        """A picture of p(x|z): channels in order, each the mixture-weighted clamped mean given
        the earlier channels' plug-in values. Not the exact expectation (the coupling and the
        clamping make that a sum over all levels); used for reconstructions and samples."""
        pi = torch.softmax(self.logits, -1)  # (*, *grid, M)
        y = torch.zeros(*self.loc.shape[:-2], 1, self.channels, dtype=self.loc.dtype, device=self.loc.device)
        for c in range(self.channels):
            y[..., 0, c] = (pi * self._means(y)[..., c].clamp(-1, 1)).sum(-1)
        return ((y + 1) / 2).reshape(*y.shape[: y.ndim - len(self.grid) - 2], *self.event_shape)


@register("discretized_logistic")
class DiscretizedLogisticHead(Head):
    """Mixture of discretized logistics per pixel (Salimans et al. 2017, PixelCNN++).

    Per pixel: ``components`` mixture logits, and per component and channel a mean, a
    scale (softplus, floored at ``min_scale`` in [-1, 1] units) and, for colour, the
    linear coupling coefficients of channel c on channels < c. The raw layout per pixel
    is [logits M | means M*C | scales M*C | coefficients M*C(C-1)/2]. Data must lie on
    the ``levels`` grey levels of [0, 1] (uint8 images); log_prob is a probability, so
    ``bits_per_dim`` is comparable with PixelCNN++-style numbers.
    """

    def __init__(self, x_shape, *, components: int = 5, levels: int = 256, min_scale: float = 1e-3):
        super().__init__(x_shape)
        for key, value in (("components", components), ("levels", levels)):
            if not (isinstance(value, int) and value >= (2 if key == "levels" else 1)):
                raise ConfigError(f"likelihood.{key} must be an integer >= {2 if key == 'levels' else 1}, got {value!r}")
        if not (isinstance(min_scale, (int, float)) and min_scale > 0):
            raise ConfigError(f"likelihood.min_scale must be a positive number, got {min_scale!r}")
        self.grid, self.channels = pixel_layout(self.x_shape)
        self.m, self.levels, self.min_scale = components, levels, float(min_scale)
        c = self.channels
        self.per_pixel = components * (1 + 2 * c + c * (c - 1) // 2)

    @property
    def raw_size(self) -> int:
        return math.prod(self.grid) * self.per_pixel

    def forward(self, raw: torch.Tensor) -> DiscretizedLogisticMixture:
        p = raw.unflatten(-1, (*self.grid, self.per_pixel))
        m, c = self.m, self.channels
        logits, loc, scale, coeffs = p.split([m, m * c, m * c, m * c * (c - 1) // 2], -1)
        loc, scale = loc.unflatten(-1, (m, c)), positive(scale, floor=self.min_scale).unflatten(-1, (m, c))
        coeffs = coeffs.unflatten(-1, (m, -1)) if c > 1 else None
        return DiscretizedLogisticMixture(logits, loc, scale, coeffs, self.x_shape, self.levels)

    def mean(self, raw: torch.Tensor) -> torch.Tensor:
        return self.forward(raw).plugin_mean()

    def check_data(self, x: torch.Tensor, what: str) -> None:
        check_unit(x, what, "a discretized logistic")
        off = float((x * (self.levels - 1) - (x * (self.levels - 1)).round()).abs().max())
        if off > 1e-3:
            raise DataError(
                f"{what} holds values between the {self.levels} grey levels that likelihood.name=discretized_logistic "
                "models (expected uint8-like images); use likelihood.name=gaussian or continuous_bernoulli"
            )
