"""Dirichlet latents on the simplex, drawn and scored in log space, implicit gradients (Figurnov et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, Distribution, constraints, kl_divergence, register_kl

from ..errors import ConfigError
from ..numerics import log_gamma, positive
from .base import Family, register
from .beta import check_positive
from .views import linear_path


class _LogSimplex(constraints.Constraint):
    """Vectors y with logsumexp(y) = 0: the logs of the points of the simplex (to float32 accuracy)."""

    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(value, -1).abs() < 1e-4


log_simplex = _LogSimplex()


class LogDirichlet(Distribution):
    """y = log z for z ~ Dirichlet(alpha) on the simplex in R^D (so logsumexp(y) = 0).

    Drawn as y = log G - logsumexp(log G), G_d ~ Gamma(alpha_d, 1) drawn in log space
    (``numerics.log_gamma``): a concentration of 0.02 puts coordinates of z below 1e-50,
    where float32 z underflows (torch clamps it to 1.2e-38) and every density computed
    from it is wrong. Scored as the density of (y_1, ..., y_(D-1)), the free coordinates:
    log q(y) = sum_d (alpha_d - 1) y_d + sum_(d<D) y_d + log Gamma(alpha_0) - sum_d log Gamma(alpha_d)
    (the Dirichlet density times the Jacobian prod_(d<D) z_d). E[y_d] = psi(alpha_d) -
    psi(alpha_0), Var[y_d] = psi'(alpha_d) - psi'(alpha_0); the KL between two of them is
    the Dirichlet KL. Shapes: concentration (*batch, D), y (*sample, *batch, D).
    """

    arg_constraints = {"concentration": constraints.independent(constraints.positive, 1)}
    support = log_simplex
    has_rsample = True

    def __init__(self, concentration: torch.Tensor, validate_args=None):
        self.concentration = concentration
        super().__init__(concentration.shape[:-1], concentration.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return LogDirichlet(self.concentration.expand(torch.Size(batch_shape) + self.event_shape), validate_args=False)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        log_g = log_gamma(self.concentration.expand(self._extended_shape(sample_shape)))
        return log_g - torch.logsumexp(log_g, -1, keepdim=True)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        alpha = self.concentration
        norm = torch.lgamma(alpha.sum(-1)) - torch.lgamma(alpha).sum(-1)
        return (alpha * value).sum(-1) - value[..., -1] + norm

    @property
    def mean(self) -> torch.Tensor:
        return torch.digamma(self.concentration) - torch.digamma(self.concentration.sum(-1, keepdim=True))

    @property
    def variance(self) -> torch.Tensor:
        return torch.polygamma(1, self.concentration) - torch.polygamma(1, self.concentration.sum(-1, keepdim=True))

    def unit(self) -> Dirichlet:
        """The distribution of z = exp(y) on the simplex."""
        return Dirichlet(self.concentration, validate_args=False)


@register_kl(LogDirichlet, LogDirichlet)
def kl_log_dirichlet(q: LogDirichlet, p: LogDirichlet) -> torch.Tensor:
    """KL between the logs of two Dirichlets = the Dirichlet KL (closed form, torch)."""
    return kl_divergence(q.unit(), p.unit())


def check_simplex_dim(name: str, dim: int) -> None:
    if dim < 2:
        raise ConfigError(f"latent.family={name} needs latent.dim >= 2 (a simplex of dimension 1 is a single point), got {dim}")


@register("dirichlet")
class DirichletFamily(Family):
    """q(z|x) = Dirichlet(alpha(x)), p(z) = Dirichlet(alpha0 * 1), z on the simplex in R^D, as log z.

    The encoder emits ``dim`` raw numbers, mapped to concentrations by softplus + floor.
    The latent is y = log z (``decoder_input`` is exp(y) = z), drawn as y = log g -
    logsumexp(log g) with g_d ~ Gamma(alpha_d, 1) in log space (see ``LogDirichlet``);
    the Gamma draws are differentiated implicitly (Figurnov, Mohamed & Mnih 2018), so the
    gradient is exact up to torch's numerical approximation of dF/d alpha.
    KL, closed form: log Gamma(a0) - sum log Gamma(a_d) - log Gamma(D alpha0)
    + D log Gamma(alpha0) + sum (a_d - alpha0)(psi(a_d) - psi(a0)), a0 = sum a_d.
    The D coordinates sum to one, so ``kl_per_dim`` is None. ``dim`` must be >= 2.
    """

    n_params = 1

    def __init__(self, dim: int, *, alpha0: float = 1.0):
        super().__init__(dim)
        check_simplex_dim(self.name, dim)
        self.alpha0 = check_positive("alpha0", alpha0)

    def posterior(self, raw: torch.Tensor) -> LogDirichlet:
        (raw_alpha,) = self.split(raw)  # (*batch, D)
        return LogDirichlet(positive(raw_alpha), validate_args=False)

    def prior(self) -> LogDirichlet:
        return LogDirichlet(self._full(self.alpha0), validate_args=False)

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        """exp(y): the point of the simplex."""
        return z.exp()

    def unit_mean(self, q: LogDirichlet) -> torch.Tensor:
        """E_q[z] = alpha / alpha_0 on the simplex, (*batch, D)."""
        return q.unit().mean

    def point(self, q: LogDirichlet) -> torch.Tensor:
        """log E_q[z]: the decoder then sees the posterior mean of z."""
        return self.unit_mean(q).log()

    def traverse(self, point: torch.Tensor, d: int, steps: int) -> torch.Tensor:
        """Move along the simplex: z_d sweeps (0.02, 0.98), the rest keep their proportions (as logs)."""
        t = torch.linspace(0.02, 0.98, steps, dtype=point.dtype, device=point.device).unsqueeze(-1)
        rest = point.exp()
        rest[d] = 0
        rest = rest / rest.sum().clamp_min(1e-12)  # (D,), sums to one without d
        z = (1 - t) * rest  # (steps, D)
        z[:, d] = t.squeeze(-1)
        return z.clamp_min(torch.finfo(z.dtype).tiny).log()

    def constrain(self, z: torch.Tensor) -> torch.Tensor:
        """Onto the simplex: the log of the normalized exp(y) (log_softmax)."""
        return F.log_softmax(z, -1)

    def interpolation_kinds(self) -> tuple[str, ...]:
        return ("linear",)

    def sample_prior(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """n prior draws shrunk towards the prior mean on the simplex, m + T (z - m), as logs: (n, D)."""
        z = self.prior().sample((n,)).exp()  # (n, D) on the simplex
        m = torch.full_like(z, 1 / self.dim)
        return self.constrain((m + temperature * (z - m)).clamp_min(torch.finfo(z.dtype).tiny).log())

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, kind: str = "linear") -> torch.Tensor:
        """Mix on the simplex, (1 - t) z_a + t z_b, and return the logs: (T, D)."""
        self.check_kind(kind)
        return linear_path(a.exp(), b.exp(), t).log()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, alpha0={self.alpha0:g}"
