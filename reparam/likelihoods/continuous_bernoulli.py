"""Continuous Bernoulli pixels for grey levels in [0, 1] (Loaiza-Ganem & Cunningham 2019)."""

from __future__ import annotations

import torch
from torch.distributions import ContinuousBernoulli, Distribution, Independent

from .base import Head, check_unit, register


@register("continuous_bernoulli")
class ContinuousBernoulliHead(Head):
    """Continuous Bernoulli pixels (Loaiza-Ganem & Cunningham 2019) for grey levels in [0, 1].

    p(x | lambda) = C(lambda) lambda^x (1 - lambda)^(1 - x) on [0, 1], with the normalizer
    C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) that the plain Bernoulli
    cross-entropy leaves out; logits from the decoder (torch's ContinuousBernoulli).
    Its mean is not lambda; pictures show the true mean.
    """

    def forward(self, raw: torch.Tensor) -> Distribution:
        cb = ContinuousBernoulli(logits=self._unflatten(raw), validate_args=False)
        return Independent(cb, len(self.x_shape))

    def check_data(self, x: torch.Tensor, what: str) -> None:
        check_unit(x, what, "a continuous Bernoulli")
