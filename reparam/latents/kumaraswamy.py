"""Kumaraswamy latents: a Beta look-alike with a closed-form inverse CDF (Nalisnick & Smyth 2017)."""

from __future__ import annotations

import math

import torch
from torch.distributions import Beta, Independent, Kumaraswamy, register_kl

from ..numerics import clamp_probs, log1mexp, uniform
from . import register
from .beta import UnitIntervalFamily

#: Terms of the Taylor series for E_q[log(1 - z)] summed exactly; the rest is estimated
#: by its integral tail (see ``expected_log1m``).
SERIES_TERMS = 100


class StableKumaraswamy(Kumaraswamy):
    """torch's Kumaraswamy(a, b) with the inverse CDF and density evaluated in log space.

    z = (1 - (1 - u)^(1/b))^(1/a), u ~ U(0, 1): log z = log(1 - exp(log(1 - u) / b)) / a.
    log q(z) = log a + log b + (a - 1) log z + (b - 1) log(1 - z^a). torch's version
    composes power transforms and returns z = 0 or 1 exactly (and log q = inf) for
    small concentrations; here samples are clamped into (0, 1) instead.
    """

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        a, b = self.concentration1, self.concentration0  # (*batch,)
        u = uniform(self._extended_shape(sample_shape), a)
        log_z = log1mexp(torch.log1p(-u) / b) / a
        return clamp_probs(log_z.exp())

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        a, b = self.concentration1, self.concentration0
        log_z = clamp_probs(value).log()
        return a.log() + b.log() + (a - 1) * log_z + (b - 1) * log1mexp(a * log_z)


def expected_log1m(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """E[log(1 - z)] for z ~ Kumaraswamy(a, b), computed in float64.

    E[log(1 - z)] = -sum_{m>=1} E[z^m] / m with E[z^m] = b B(1 + m/a, b) (Nalisnick &
    Smyth 2017, appendix). The first SERIES_TERMS terms are summed; since
    E[z^m] ~ Gamma(b + 1) (a / m)^b for large m, the tail is Gamma(b) a^b (M + 1/2)^(-b).
    """
    a, b = a.double().unsqueeze(-1), b.double().unsqueeze(-1)  # (*batch, 1)
    m = torch.arange(1, SERIES_TERMS + 1, dtype=a.dtype, device=a.device)  # (M,)
    log_terms = b.log() + torch.lgamma(1 + m / a) + torch.lgamma(b) - torch.lgamma(1 + m / a + b) - m.log()
    head = torch.logsumexp(log_terms, -1)
    log_tail = torch.lgamma(b) + b * a.log() - b * math.log(SERIES_TERMS + 0.5)
    return -torch.logaddexp(head, log_tail.squeeze(-1)).exp()


@register_kl(StableKumaraswamy, Beta)
def kl_kumaraswamy_beta(q: StableKumaraswamy, p: Beta) -> torch.Tensor:
    """KL(Kumaraswamy(a, b) || Beta(alpha, beta)) (Nalisnick & Smyth 2017, sec. 3.2):

    (a - alpha) / a (-gamma - psi(b) - 1/b) + log(a b) + log B(alpha, beta) - (b - 1) / b
    - (beta - 1) E_q[log(1 - z)], the last expectation as a series (``expected_log1m``),
    skipped when beta = 1.
    """
    a, b = q.concentration1, q.concentration0
    alpha, beta = p.concentration1, p.concentration0
    euler = 0.5772156649015329
    log_b_prior = torch.lgamma(alpha) + torch.lgamma(beta) - torch.lgamma(alpha + beta)
    kl = (a - alpha) / a * (-euler - torch.digamma(b) - 1 / b) + (a * b).log() + log_b_prior - (b - 1) / b
    if bool((beta == 1).all()):
        return kl
    return kl - (beta - 1) * expected_log1m(a, b).to(kl.dtype)


@register("kumaraswamy")
class KumaraswamyFamily(UnitIntervalFamily):
    """q(z|x) = prod_d Kumaraswamy(a_d, b_d), p(z) = prod_d Beta(prior_alpha, prior_beta).

    The encoder emits ``2 * dim`` raw numbers, mapped to a, b by softplus + floor. The
    Kumaraswamy's CDF 1 - (1 - z^a)^b inverts in closed form, so z is an explicit
    differentiable function of (a, b) and uniform noise (Nalisnick & Smyth 2017,
    "Stick-Breaking Variational Autoencoders"). KL to the Beta prior: closed form up to
    one series, see ``kl_kumaraswamy_beta``; exact when prior_beta = 1.
    """

    def posterior(self, raw: torch.Tensor) -> Independent:
        a, b = self.concentrations(raw)  # (*batch, D) each
        return Independent(StableKumaraswamy(a, b, validate_args=False), 1)

