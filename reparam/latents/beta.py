"""Beta latents on (0, 1)^D, drawn and scored in logit space so that no draw rounds to 0 or 1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Beta, Distribution, Independent, constraints, kl_divergence, register_kl
from torch.distributions.utils import broadcast_all

from ..errors import ConfigError
from ..numerics import clamp_probs, log_gamma, positive
from .base import Family, register


def check_positive(key: str, value: float) -> float:
    """``value`` as a float if it is a number > 0, else ConfigError naming ``latent.<key>``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"latent.{key} must be a number > 0, got {value!r}")
    return float(value)


class LogitBeta(Distribution):
    """The logit y = log z - log(1 - z) of z ~ Beta(a, b): a distribution on R.

    Drawn as y = log G_a - log G_b with G ~ Gamma(., 1) drawn in log space
    (``numerics.log_gamma``); scored as log q(y) = a log sigmoid(y) + b log sigmoid(-y)
    - log B(a, b) (the Beta density times dz/dy = z (1 - z)). Both tails stay exact in
    float32: a concentration of 0.02 puts z within 1e-50 of 0 or 1, where z itself rounds
    and every density computed from it is wrong. E[y] = psi(a) - psi(b), Var[y] =
    psi'(a) + psi'(b); the KL between two of them is the Beta KL (a bijection keeps it).
    Shapes: concentrations (*batch,), y (*sample, *batch).
    """

    arg_constraints = {"concentration1": constraints.positive, "concentration0": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, concentration1: torch.Tensor, concentration0: torch.Tensor, validate_args=None):
        self.concentration1, self.concentration0 = broadcast_all(concentration1, concentration0)
        super().__init__(self.concentration1.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return LogitBeta(self.concentration1.expand(batch_shape), self.concentration0.expand(batch_shape), validate_args=False)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        return log_gamma(self.concentration1.expand(shape)) - log_gamma(self.concentration0.expand(shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration1, self.concentration0
        log_beta = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
        return a * F.logsigmoid(value) + b * F.logsigmoid(-value) - log_beta

    @property
    def mean(self) -> torch.Tensor:
        return torch.digamma(self.concentration1) - torch.digamma(self.concentration0)

    @property
    def variance(self) -> torch.Tensor:
        return torch.polygamma(1, self.concentration1) + torch.polygamma(1, self.concentration0)

    def unit(self) -> Beta:
        """The distribution of z = sigmoid(y)."""
        return Beta(self.concentration1, self.concentration0, validate_args=False)


@register_kl(LogitBeta, LogitBeta)
def kl_logit_beta(q: LogitBeta, p: LogitBeta) -> torch.Tensor:
    """KL between the logits of two Betas = the Beta KL (closed form, torch)."""
    return kl_divergence(q.unit(), p.unit())


class UnitIntervalFamily(Family):
    """Shared by families on (0, 1)^D with a Beta(prior_alpha, prior_beta) prior.

    The latent is the logit y in R^D of z in (0, 1)^D (``decoder_input`` is sigmoid(y)), so
    draws and densities stay exact near 0 and 1 (see ``LogitBeta``). The KL is invariant
    to the bijection, so every closed form for z holds for y.
    """

    n_params = 2

    def __init__(self, dim: int, *, prior_alpha: float = 1.0, prior_beta: float = 1.0):
        super().__init__(dim)
        self.prior_alpha = check_positive("prior_alpha", prior_alpha)
        self.prior_beta = check_positive("prior_beta", prior_beta)

    def concentrations(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(*batch, 2 D) -> (a, b), each (*batch, D), softplus + floor."""
        raw_a, raw_b = self.split(raw)
        return positive(raw_a), positive(raw_b)

    def prior(self) -> Independent:
        a, b = self._full(self.prior_alpha), self._full(self.prior_beta)
        return Independent(LogitBeta(a, b, validate_args=False), 1)

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        """sigmoid(y): the point of (0, 1)^D the logit y stands for."""
        return torch.sigmoid(z)

    def unit_mean(self, q: Independent) -> torch.Tensor:
        """E_q[z] in (0, 1)^D, (*batch, D)."""
        return q.base_dist.unit().mean

    def point(self, q: Independent) -> torch.Tensor:
        """logit(E_q[z]): the decoder then sees the posterior mean of z."""
        return torch.logit(clamp_probs(self.unit_mean(q)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, prior=Beta({self.prior_alpha:g}, {self.prior_beta:g})"


@register("beta")
class BetaFamily(UnitIntervalFamily):
    """q(z|x) = prod_d Beta(a_d, b_d), p(z) = prod_d Beta(prior_alpha, prior_beta), as logits.

    The encoder emits ``2 * dim`` raw numbers, mapped to a, b by softplus + floor.
    A Beta has no location-scale form; it is drawn through Gamma variables, whose sample
    is differentiated implicitly, dG/dc = -(dF/dc)(G) / p(G) with F the CDF (Figurnov,
    Mohamed & Mnih 2018, "Implicit Reparameterization Gradients"), in log space (see
    ``LogitBeta``). KL per dimension is closed form:
    KL = log B(pa, pb) - log B(a, b) + (a - pa) psi(a) + (b - pb) psi(b)
         + (pa + pb - a - b) psi(a + b).
    """

    def posterior(self, raw: torch.Tensor) -> Independent:
        a, b = self.concentrations(raw)  # (*batch, D) each
        return Independent(LogitBeta(a, b, validate_args=False), 1)
