"""Exact categorical latents: N one-hot variables of K classes, no relaxation (score function only).

The discrete counterpart of ``categorical`` (Gumbel-softmax, Jang et al. 2017): the same
layout, but z is a true one-hot draw, so only the score-function estimator applies
(``objective.estimator=score``; Jang et al. 2017, Table 1 compare both on MNIST).
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch.distributions import Independent, OneHotCategorical, ReshapeTransform, TransformedDistribution

from ..errors import ConfigError
from .base import Family, register
from .bernoulli_exact import NoGradDraw
from .views import linear_path


class DiscreteOneHot(NoGradDraw, OneHotCategorical):
    """torch's OneHotCategorical(logits), with the no-gradient ``rsample`` of NoGradDraw."""


@register("categorical-exact")
class ExactCategoricalFamily(Family):
    """q(z|x) = prod_n OneHotCategorical(softmax(l_n)), flattened to z in {0, 1}^(N K).

    ``dim`` = N * K with K = ``classes``; variable n owns coordinates [n K, (n + 1) K).
    The encoder emits ``dim`` logits. Prior: uniform over classes. Closed-form KL:
    sum_n [sum_k p_nk log p_nk + log K].
    """

    n_params = 1

    def __init__(self, dim: int, *, classes: int = 4):
        super().__init__(dim)
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2 or dim % classes:
            raise ConfigError(f"latent.classes must be an integer >= 2 that divides latent.dim={dim}, got {classes!r}")
        self.classes, self.variables = classes, dim // classes

    def _onehot(self, logits: torch.Tensor) -> TransformedDistribution:
        """logits (*batch, N, K) -> event (N K,), flattened."""
        base = Independent(DiscreteOneHot(logits=logits, validate_args=False), 1)
        flat = ReshapeTransform(torch.Size((self.variables, self.classes)), torch.Size((self.dim,)))
        return TransformedDistribution(base, [flat], validate_args=False)

    def posterior(self, raw: torch.Tensor) -> TransformedDistribution:
        (logits,) = self.split(raw)  # (*batch, N K)
        return self._onehot(logits.unflatten(-1, (self.variables, self.classes)))

    def prior(self) -> TransformedDistribution:
        return self._onehot(self._full(0.0).unflatten(-1, (self.variables, self.classes)))

    def log_probs(self, q: TransformedDistribution) -> torch.Tensor:
        """Normalized log p_nk, (*batch, N, K)."""
        return cast(Independent, q.base_dist).base_dist.logits  # built by posterior() above

    def kl(self, q: TransformedDistribution, z: torch.Tensor | None = None) -> torch.Tensor:
        logp = self.log_probs(q)
        return (logp.exp() * logp).sum((-2, -1)) + self.variables * math.log(self.classes)

    def _onehot_of(self, scores: torch.Tensor) -> torch.Tensor:
        """One-hot of the argmax of each variable's scores, (*batch, N K) -> (*batch, N K)."""
        y = scores.unflatten(-1, (self.variables, self.classes))
        return F.one_hot(y.argmax(-1), self.classes).to(scores.dtype).flatten(-2)

    def point(self, q: TransformedDistribution) -> torch.Tensor:
        """The likeliest class of each variable, one-hot (the mode), (*batch, N K)."""
        return self._onehot_of(self.log_probs(q).flatten(-2))

    def traverse(self, point: torch.Tensor, d: int, steps: int) -> torch.Tensor:
        """d's variable keeps its class for the first half of the steps, then takes class d."""
        n, k = divmod(d, self.classes)
        z = point.expand(steps, self.dim).clone()  # (steps, D)
        late = torch.arange(steps, device=point.device) >= steps / 2
        z[late, n * self.classes : (n + 1) * self.classes] = F.one_hot(torch.tensor(k), self.classes).to(point)
        return z

    def constrain(self, z: torch.Tensor) -> torch.Tensor:
        """One-hot per variable: the class with the largest value."""
        return self._onehot_of(z)

    def interpolation_kinds(self) -> tuple[str, ...]:
        return ("linear",)

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, kind: str = "linear") -> torch.Tensor:
        """The one-hot nearest to (1 - t) a + t b per variable (ties go to b), (T, D)."""
        self.check_kind(kind)
        mix = linear_path(a, b, t) + 1e-6 * b
        return self._onehot_of(mix)

    def sample_prior(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """n uniform one-hot draws (n, D); a uniform prior has no temperature to change."""
        return self.prior().sample((n,))

    def extra_repr(self) -> str:
        return f"{self.variables} x {self.classes} classes, dim={self.dim}"
