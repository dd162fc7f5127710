"""Relaxed Bernoulli latents (binary Concrete), scored in logit space (Maddison et al. 2017)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Independent, constraints

from ..numerics import uniform
from .base import register
from .bernoulli_exact import ExactBernoulliFamily
from .relaxed import RelaxedFamily


class LogisticBinaryConcrete(Distribution):
    """The logit of a binary Concrete(alpha = exp(logits), tau): a logistic on R.

    y = (logits + log u - log(1 - u)) / tau, u ~ U(0, 1), so sigmoid(y) ~ BinConcrete.
    log p(y) = log tau + d - 2 softplus(d), d = logits - tau y (Maddison, Mnih & Teh
    2017, appendix C). Scoring y rather than sigmoid(y) avoids log(0) when sigmoid(y)
    rounds to 0 or 1, which happens in float32 for |y| > 17. torch's
    ``LogitRelaxedBernoulli`` is the same distribution, but its log_prob computes
    log(1 + exp(d)) as ``exp(d).log1p()``, which overflows to -inf for d > 88 (logits 100,
    y = -200 at tau = 1/2), where the softplus here stays finite (-200.69). Shapes: logits (*batch,),
    tau a 0-dim tensor; E[y] = logits / tau, Var[y] = pi^2 / (3 tau^2).
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, temperature: torch.Tensor, logits: torch.Tensor, validate_args=None):
        self.temperature, self.logits = temperature, logits
        super().__init__(logits.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return LogisticBinaryConcrete(self.temperature, self.logits.expand(batch_shape), validate_args=False)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        u = uniform(self._extended_shape(sample_shape), self.logits)
        return (self.logits + u.log() - torch.log1p(-u)) / self.temperature

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        d = self.logits - self.temperature * value
        return self.temperature.log() + d - 2 * F.softplus(d)

    @property
    def mean(self) -> torch.Tensor:
        return self.logits / self.temperature

    @property
    def variance(self) -> torch.Tensor:
        return torch.full_like(self.logits, math.pi**2 / 3) / self.temperature**2


@register("bernoulli")
class RelaxedBernoulliFamily(RelaxedFamily):
    """D relaxed bits: q(y|x) = prod_d LogisticBinaryConcrete(logits_d, tau), decoder sees sigmoid(y).

    The latent z is the logit y (R^D); ``decoder_input`` maps it to sigmoid(y) in
    (0, 1)^D, or with ``hard`` to the bits 1[y > 0] with the straight-through gradient.
    Prior: Bernoulli(1/2), relaxed at ``prior_temperature`` (1/2 by default) for kl='relaxed'. The
    encoder emits ``dim`` logits. KL 'relaxed': Monte Carlo in logit space (the KL is
    invariant to the bijection sigmoid). KL 'discrete': per bit,
    KL(Bernoulli(sigmoid(l)) || Bernoulli(1/2)) = p log p + (1 - p) log(1 - p) + log 2.
    The pathwise gradient is unbiased for E_q_tau[f(y)], the relaxed objective.
    """

    n_params = 1

    def __init__(
        self, dim: int, *, temperature: float = 1.0, temperature_min: float = 0.5, anneal_rate: float = 3e-5,
        prior_temperature: float | None = None, hard: bool = False, kl: str = "discrete",
    ):
        super().__init__(dim)
        self.setup(temperature, temperature_min, anneal_rate, prior_temperature, hard, kl)

    def posterior(self, raw: torch.Tensor) -> Independent:
        (logits,) = self.split(raw)  # (*batch, D)
        return Independent(LogisticBinaryConcrete(self.tau(), logits, validate_args=False), 1)

    def prior(self) -> Independent:
        return Independent(LogisticBinaryConcrete(self.prior_tau(), self._full(0.0), validate_args=False), 1)

    def exact(self) -> ExactBernoulliFamily:
        return ExactBernoulliFamily(self.dim)

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        soft = torch.sigmoid(z)  # (*batch, D)
        if not self.hard:
            return soft
        return (z > 0).to(soft.dtype) + soft - soft.detach()  # straight-through

    def bit_kl(self, q: Independent) -> torch.Tensor:
        """(*batch, D): KL(Bernoulli(sigmoid(l)) || Bernoulli(1/2)) per bit."""
        logits = q.base_dist.logits
        p = torch.sigmoid(logits)
        return p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits) + math.log(2)

    def discrete_kl(self, q: Independent) -> torch.Tensor:
        return self.bit_kl(q).sum(-1)

    def kl_per_dim(self, q: Independent) -> torch.Tensor | None:
        return self.bit_kl(q) if self.kl_mode == "discrete" else None

    def point(self, q: Independent) -> torch.Tensor:
        """The logits: the decoder then sees sigmoid(logits) = P(bit = 1), or the likelier bit."""
        return q.base_dist.logits

    def unit_mean(self, q: Independent) -> torch.Tensor:
        """P(bit = 1) = sigmoid(logits), the mean of the bit the relaxation stands for."""
        return torch.sigmoid(q.base_dist.logits)

    def traverse(self, point: torch.Tensor, d: int, steps: int) -> torch.Tensor:
        """Flip bit d: y_d sweeps [-6, 6], so sigmoid(y_d) goes from 0.0025 to 0.9975."""
        z = point.expand(steps, self.dim).clone()  # (steps, D)
        z[:, d] = torch.linspace(-6.0, 6.0, steps, dtype=point.dtype, device=point.device)
        return z
