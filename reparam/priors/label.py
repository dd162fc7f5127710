"""A learned prior of the labels, p(z|y), for conditional models (``model.condition=label``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from ..numerics import positive
from .base import Posterior, Prior, register
from .mixture import GaussianMixture
from .mog import MixtureOfGaussians


@register("label")
class LabelPrior(Prior):
    """p(z|y) = N(mu_y, diag(sigma_y^2)), one learned Gaussian per class (``components`` = C).

    A (relaxed) one-hot y (*B, C) mixes the rows of the tables linearly: y @ mu and
    softplus(y @ raw) + floor, so a relaxed label moves the prior between the classes' own.
    Initialized at N(0, I) for every class. Without a label it is the marginal p(z) =
    (1/C) sum_y p(z|y). A diagonal Gaussian posterior keeps a closed-form KL to it.
    """

    conditional = True

    def __init__(self, family, x_shape: tuple[int, ...], components: int):
        super().__init__(family, x_shape, components)
        self.loc = nn.Parameter(torch.zeros(components, family.dim))
        self.raw_scale = nn.Parameter(torch.full((components, family.dim), 0.5413))  # softplus -> 1

    @classmethod
    def check(cls, cfg, family) -> None:
        """A Gaussian on R^D, as for the mixture prior (ConfigError, one line)."""
        MixtureOfGaussians.check(cfg, family)

    def distribution(self, family, posterior: Posterior, y: torch.Tensor | None = None) -> Distribution:
        if y is None:
            return GaussianMixture(self.loc.new_zeros(self.components), self.loc, positive(self.raw_scale))
        return Independent(Normal(y @ self.loc, positive(y @ self.raw_scale), validate_args=False), 1)

    @torch.no_grad()
    def sample(self, n: int, temperature: float, family, posterior: Posterior, y: torch.Tensor | None = None) -> torch.Tensor:
        """n draws of p(z|y) (y one-hot (n, C)), or of the marginal over uniform labels, at a temperature."""
        if y is None:
            y = nn.functional.one_hot(torch.randint(self.components, (n,), device=self.loc.device), self.components).to(self.loc.dtype)
        p = self.distribution(family, posterior, y)
        assert isinstance(p, Independent)  # y is given: the Gaussians of the labels (distribution above)
        d = p.base_dist
        return d.loc + temperature * d.scale * torch.randn_like(d.loc)

