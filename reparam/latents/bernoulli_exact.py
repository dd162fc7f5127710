"""Exact Bernoulli latents: D truly discrete bits, no relaxation, trained with score functions.

A discrete draw is not a differentiable function of its parameters, so there is no
reparameterization: these families have ``has_rsample = False`` and the gradient of
E_q[f(z)] with respect to the encoder comes from the score-function estimator
(``objective.estimator=score``, Williams 1992; with baselines, Mnih & Gregor 2014).
Compare with ``bernoulli``, the relaxed (binary Concrete) family trained by the trick.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, Independent

from .base import Family, register
from .views import linear_path


class NoGradDraw(Distribution):
    """Mixin for a discrete distribution: ``rsample`` only where no gradient is wanted.

    No reparameterization exists for a discrete draw (``has_rsample`` stays False, and
    the estimators read it). Under ``no_grad``/``inference_mode`` (held-out evaluation,
    pictures) ``rsample`` returns an ordinary draw, so code that draws z the same way for
    every family keeps working; with gradients on it raises, so a loss can never silently
    lose the encoder's gradient.
    """

    has_rsample = False

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise NotImplementedError(
                f"{type(self).__name__} is discrete and has no reparameterized sample; use objective.estimator=score"
            )
        return self.sample(sample_shape)


class DiscreteBernoulli(NoGradDraw, Bernoulli):
    """torch's Bernoulli(logits), (*batch,), with the no-gradient ``rsample`` above."""


@register("bernoulli-exact")
class ExactBernoulliFamily(Family):
    """q(z|x) = prod_d Bernoulli(sigmoid(l_d)), z in {0, 1}^D; p(z) = Bernoulli(1/2)^D.

    The encoder emits ``dim`` logits l. Closed-form KL per bit (torch's registered
    Bernoulli KL): KL_d = p log p + (1 - p) log(1 - p) + log 2 with p = sigmoid(l_d).
    The decoder sees the bits themselves.
    """

    n_params = 1

    def posterior(self, raw: torch.Tensor) -> Independent:
        (logits,) = self.split(raw)  # (*batch, D)
        return Independent(DiscreteBernoulli(logits=logits, validate_args=False), 1)

    def prior(self) -> Independent:
        return Independent(DiscreteBernoulli(logits=self._full(0.0), validate_args=False), 1)

    def kl(self, q: Independent, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.kl_per_dim(q).sum(-1)

    def kl_per_dim(self, q: Independent) -> torch.Tensor:
        """(*batch, D): KL(Bernoulli(sigmoid(l)) || Bernoulli(1/2)) per bit, in log space."""
        logits = q.base_dist.logits
        p = torch.sigmoid(logits)
        return p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits) + math.log(2)

    def point(self, q: Independent) -> torch.Tensor:
        """The likelier bit of each coordinate (the mode): stays in {0, 1}^D."""
        return (q.base_dist.logits > 0).to(q.base_dist.logits.dtype)

    def traverse(self, point: torch.Tensor, d: int, steps: int) -> torch.Tensor:
        """Bit d off for the first half of the steps, on for the second half."""
        z = point.expand(steps, self.dim).clone()  # (steps, D)
        z[:, d] = (torch.arange(steps, device=point.device) >= steps / 2).to(point.dtype)
        return z

    def constrain(self, z: torch.Tensor) -> torch.Tensor:
        """The nearest bits: 1 where z > 1/2, else 0."""
        return (z > 0.5).to(z.dtype)

    def interpolation_kinds(self) -> tuple[str, ...]:
        return ("linear",)

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, kind: str = "linear") -> torch.Tensor:
        """The bits nearest to (1 - t) a + t b: a's bits, then b's, switching at t = 1/2. (T, D)."""
        self.check_kind(kind)
        return linear_path(a, b, t).round()

    def sample_prior(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """n uniform bit vectors (n, D); a uniform prior has no temperature to change."""
        return self.prior().sample((n,))
