"""The VampPrior (Tomczak & Welling 2018): a mixture of the posteriors at learned pseudo-inputs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from .base import Posterior, Prior, register
from .mixture import GaussianMixture


@register("vamp")
class VampPrior(Prior):
    """p(z) = (1/K) sum_k q(z | u_k), u_k learned pseudo-inputs of the data's shape.

    The posterior of the same encoder and family is mixed at K = ``components``
    pseudo-inputs (Tomczak & Welling 2018, eq. 9), so the prior follows the aggregate
    posterior it approximates. Pseudo-inputs are kept in the data's range [0, 1] by a
    hard tanh of free parameters initialized at N(0.05, 0.01^2) (their code's choice);
    the KL to the posterior is estimated by Monte Carlo.
    """

    default_components = 500

    def __init__(self, family, x_shape: tuple[int, ...], components: int):
        super().__init__(family, x_shape, components)
        g = torch.Generator().manual_seed(0)
        self.raw_inputs = nn.Parameter(0.05 + 0.01 * torch.randn(components, *x_shape, generator=g))

    def pseudo_inputs(self) -> torch.Tensor:
        """u (K, *x_shape) in [0, 1]."""
        return F.hardtanh(self.raw_inputs, 0.0, 1.0)

    def distribution(self, family, posterior: Posterior, y: torch.Tensor | None = None) -> Distribution:
        """The mixture of q(z | u_k): through matrix products where q is a diagonal Gaussian."""
        q = posterior(self.pseudo_inputs())  # batch (K,), event (D,)
        uniform = torch.zeros(self.components, device=self.raw_inputs.device)
        if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
            return GaussianMixture(uniform.to(q.base_dist.loc.dtype), q.base_dist.loc, q.base_dist.scale)  # float32 weights would round a float64 density
        return MixtureSameFamily(Categorical(logits=uniform), q, validate_args=False)

    @torch.no_grad()
    def sample(self, n: int, temperature: float, family, posterior: Posterior, y: torch.Tensor | None = None) -> torch.Tensor:
        """k uniform, z ~ q(z | u_k); tempered around that component's representative point."""
        k = torch.randint(self.components, (n,), device=self.raw_inputs.device)
        q = posterior(self.pseudo_inputs()[k])  # batch (n,)
        z = q.sample()  # (n, D)
        if temperature == 1.0:
            return z
        m = family.point(q)
        return family.constrain(m + temperature * (z - m))

    def extra_repr(self) -> str:
        return f"components={self.components}, pseudo-inputs {tuple(self.raw_inputs.shape[1:])} (log K = {math.log(self.components):.2f})"
