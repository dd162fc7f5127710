"""The family's own prior: p(z) = family.prior(), no parameters."""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from .base import Posterior, Prior, register


@register("standard")
class StandardPrior(Prior):
    """p(z) = the latent family's prior (N(0, I) for ``gaussian``); closed-form KLs stay closed form."""

    learned = False

    def distribution(self, family, posterior: Posterior, y: torch.Tensor | None = None) -> Distribution:
        return family.prior()

    def sample(self, n: int, temperature: float, family, posterior: Posterior, y: torch.Tensor | None = None) -> torch.Tensor:
        return family.sample_prior(n, temperature)
