"""Relaxed categorical latents: N variables x K classes, Gumbel-softmax (Jang et al. 2017)."""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch.distributions import Independent, ReshapeTransform, TransformedDistribution
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from ..errors import ConfigError
from .base import register
from .categorical_exact import ExactCategoricalFamily
from .relaxed import RelaxedFamily


@register("categorical")
class RelaxedCategoricalFamily(RelaxedFamily):
    """N = dim / classes relaxed one-hot variables of K = ``classes`` classes each.

    Layout: ``dim`` = N * K, and the latent is flattened to (*batch, N K) so the decoder
    sees a (D,) vector like every family's; variable n owns coordinates [n K, (n + 1) K).
    The latent z is the *log* of the relaxed one-hot, y = log_softmax((logits + g) / tau),
    g ~ Gumbel(0, 1) (ExpConcrete, Maddison, Mnih & Teh 2017, appendix C, where log
    densities stay finite); ``decoder_input`` returns exp(y) (Gumbel-softmax; Jang, Gu &
    Poole 2017), or with ``hard`` the one-hot of argmax y with the straight-through
    gradient. log q(y) = log (K-1)! + (K-1) log tau + sum_k (l_k - tau y_k)
    - K logsumexp_k(l_k - tau y_k), l = log_softmax(logits) (torch's ExpRelaxedCategorical).
    Prior: the uniform categorical, relaxed at ``prior_temperature`` for kl='relaxed'.
    KL 'relaxed': Monte Carlo; 'discrete': sum_n [sum_k p_nk log p_nk + log K].
    The pathwise gradient is unbiased for the relaxed objective E_q_tau[f(y)].
    The encoder emits ``dim`` logits. ``classes`` >= 2 must divide ``dim``.
    """

    n_params = 1

    def __init__(
        self, dim: int, *, classes: int = 4, temperature: float = 1.0, temperature_min: float = 0.5,
        anneal_rate: float = 3e-5, prior_temperature: float | None = None, hard: bool = False, kl: str = "discrete",
    ):
        super().__init__(dim)
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2 or dim % classes:
            raise ConfigError(f"latent.classes must be an integer >= 2 that divides latent.dim={dim}, got {classes!r}")
        self.classes, self.variables = classes, dim // classes
        self.setup(temperature, temperature_min, anneal_rate, prior_temperature, hard, kl, classes)

    def _relaxed(self, tau: torch.Tensor, logits: torch.Tensor) -> TransformedDistribution:
        """logits (*batch, N, K) -> event (N K,), flattened."""
        base = Independent(ExpRelaxedCategorical(tau, logits=logits, validate_args=False), 1)
        flat = ReshapeTransform(torch.Size((self.variables, self.classes)), torch.Size((self.dim,)))
        return TransformedDistribution(base, [flat], validate_args=False)

    def logits(self, q: TransformedDistribution) -> torch.Tensor:
        """Normalized logits log p_nk of q, (*batch, N, K)."""
        return cast(Independent, q.base_dist).base_dist.logits  # built by _relaxed() above

    def posterior(self, raw: torch.Tensor) -> TransformedDistribution:
        (logits,) = self.split(raw)  # (*batch, N K)
        return self._relaxed(self.tau(), logits.unflatten(-1, (self.variables, self.classes)))

    def prior(self) -> TransformedDistribution:
        zeros = self._full(0.0).unflatten(-1, (self.variables, self.classes))
        return self._relaxed(self.prior_tau(), zeros)

    def exact(self) -> ExactCategoricalFamily:
        return ExactCategoricalFamily(self.dim, classes=self.classes)

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        y = z.unflatten(-1, (self.variables, self.classes))  # (*batch, N, K)
        soft = y.exp()
        if self.hard:
            hard = F.one_hot(y.argmax(-1), self.classes).to(soft.dtype)
            soft = hard + soft - soft.detach()  # straight-through
        return soft.flatten(-2)

    def discrete_kl(self, q: TransformedDistribution) -> torch.Tensor:
        logp = self.logits(q)  # (*batch, N, K)
        return (logp.exp() * logp).sum((-2, -1)) + self.variables * math.log(self.classes)

    def point(self, q: TransformedDistribution) -> torch.Tensor:
        """log p_nk, flattened: the decoder then sees the class probabilities (or the modes)."""
        return self.logits(q).flatten(-2)

    def unit_mean(self, q: TransformedDistribution) -> torch.Tensor:
        """The class probabilities p_nk, flattened: the mean of the one-hot the relaxation stands for."""
        return self.logits(q).exp().flatten(-2)

    def traverse(self, point: torch.Tensor, d: int, steps: int) -> torch.Tensor:
        """Move the mass of d's variable onto class d: p_t = (1 - t) p + t e_d, t in [0, 1]."""
        n, k = divmod(d, self.classes)
        group = slice(n * self.classes, (n + 1) * self.classes)
        t = torch.linspace(0.0, 1.0, steps, dtype=point.dtype, device=point.device).unsqueeze(-1)
        target = F.one_hot(torch.tensor(k), self.classes).to(point)
        z = point.expand(steps, self.dim).clone()  # (steps, D)
        z[:, group] = ((1 - t) * point[group].exp() + t * target).clamp_min(1e-12).log()
        return z

    def constrain(self, z: torch.Tensor) -> torch.Tensor:
        """Valid log class probabilities: each variable's scores through log_softmax."""
        return F.log_softmax(z.unflatten(-1, (self.variables, self.classes)), -1).flatten(-2)

    def interpolation_kinds(self) -> tuple[str, ...]:
        return ("linear",)

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, kind: str = "linear") -> torch.Tensor:
        """Mix the class probabilities, (1 - t) p_a + t p_b, and return their logs: (T, D)."""
        self.check_kind(kind)
        t = t.to(a.dtype).unsqueeze(-1)  # (T, 1)
        return ((1 - t) * a.exp() + t * b.exp()).clamp_min(1e-12).log()

    def extra_repr(self) -> str:
        return f"{self.variables} x {self.classes} classes, " + super().extra_repr()
