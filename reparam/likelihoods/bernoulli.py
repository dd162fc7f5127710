"""Bernoulli pixels: binary images (or grey levels read as probabilities)."""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Distribution, Independent
from torch.nn import functional as F

from .base import Head, check_unit, register


class PixelBernoulli(Independent):
    """Independent Bernoulli pixels with ``log_prob = sum(x * logits) - sum(softplus(logits))``.

    The same values as ``Independent(Bernoulli(logits))`` (the binary cross-entropy with
    logits, summed over the image), in two reductions instead of torch's elementwise chain:
    1.5x faster for the K x pixels logits of an importance-sampled log-likelihood.
    """

    def __init__(self, logits: torch.Tensor, event_dims: int):
        super().__init__(Bernoulli(logits=logits, validate_args=False), event_dims, validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits = self.base_dist.logits
        dims = tuple(range(-self.reinterpreted_batch_ndims, 0))
        return (logits * value).sum(dims) - F.softplus(logits).sum(dims)


@register("bernoulli")
class BernoulliHead(Head):
    """Independent Bernoulli pixels with logits from the decoder; data must lie in [0, 1].

    Binary data gives a normalized likelihood. Grey levels in (0, 1) are accepted (the
    usual cross-entropy), but only binarized data yields a true log-likelihood.
    """

    def forward(self, raw: torch.Tensor) -> Distribution:
        return PixelBernoulli(self._unflatten(raw), len(self.x_shape))

    def mean(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._unflatten(raw))

    def raw_for_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The logits of ``mean``, each pixel's probability held in [1e-3, 1 - 1e-3] (Burda et al.'s code clips so)."""
        return torch.logit(mean.clamp(1e-3, 1 - 1e-3)).flatten()

    def check_data(self, x: torch.Tensor, what: str) -> None:
        check_unit(x, what, "a Bernoulli")
