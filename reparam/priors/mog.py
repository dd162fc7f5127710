"""A mixture of Gaussians as a learned prior on R^D."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal, constraints

from ..errors import ConfigError
from ..numerics import positive
from .base import Posterior, Prior, register
from .mixture import GaussianMixture


@register("mog")
class MixtureOfGaussians(Prior):
    """p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), K = ``components``, all learned.

    pi = softmax(logits), sigma = softplus(raw) + floor. Initialized near N(0, I): logits 0,
    means N(0, 0.5^2) (so that the components differ), scales 1. Only for families whose
    latents live on all of R^D (a Gaussian, a Laplace, the logits of a Beta); the KL to the
    posterior is estimated by Monte Carlo (no closed form exists).
    """

    default_components = 500

    def __init__(self, family, x_shape: tuple[int, ...], components: int):
        super().__init__(family, x_shape, components)
        g = torch.Generator().manual_seed(0)  # the initial means do not depend on the caller's RNG
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(0.5 * torch.randn(components, family.dim, generator=g))
        self.raw_scale = nn.Parameter(torch.full((components, family.dim), 0.5413))  # softplus -> 1

    @classmethod
    def check(cls, cfg, family) -> None:
        super().check(cfg, family)
        support = family.prior().support
        if getattr(support, "base_constraint", support) is not constraints.real:
            raise ConfigError(f"prior.name={cfg.name} mixes Gaussians on R^D; latent.family={family.name} has latents in {support}, use prior.name=vamp")

    def components_distribution(self) -> Independent:
        return Independent(Normal(self.loc, positive(self.raw_scale), validate_args=False), 1)  # batch (K,)

    def distribution(self, family, posterior: Posterior, y: torch.Tensor | None = None) -> Distribution:
        return GaussianMixture(self.logits, self.loc, positive(self.raw_scale))

    @torch.no_grad()
    def sample(self, n: int, temperature: float, family, posterior: Posterior, y: torch.Tensor | None = None) -> torch.Tensor:
        """Component k ~ pi, then mu_k + T sigma_k eps: each component tempered around its mean."""
        k = Categorical(logits=self.logits).sample((n,))  # (n,)
        comp = self.components_distribution()
        loc, scale = comp.base_dist.loc[k], comp.base_dist.scale[k]  # (n, D)
        return loc + temperature * scale * torch.randn_like(loc)
