"""Hyperspherical latents: the Power Spherical distribution (De Cao & Aziz 2020).

Why Power Spherical rather than von Mises-Fisher: its sampler needs no rejection step,
only a Beta draw (differentiated implicitly by torch) and a Householder reflection, so
the pathwise gradient is exact and stable in any dimension, while vMF samplers use
rejection (Wood 1994) whose reparameterized gradient needs a correction term and
Bessel functions that overflow in high dimension (Davidson et al. 2018). Both have a
closed-form KL to the uniform distribution on the sphere.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Beta, Distribution, constraints, register_kl

from ..errors import ConfigError
from ..numerics import positive, unit
from .base import Family, register
from .views import linear_path


class _Sphere(constraints.Constraint):
    """Unit vectors over the last dimension (to float32 accuracy)."""

    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (value.norm(dim=-1) - 1).abs() < 1e-4


sphere = _Sphere()


def log_sphere_area(d: int) -> float:
    """log |S^(d-1)| = log(2 pi^(d/2) / Gamma(d/2)), the surface area of the unit sphere in R^d."""
    return math.log(2) + d / 2 * math.log(math.pi) - math.lgamma(d / 2)


class HypersphericalUniform(Distribution):
    """The uniform distribution on S^(d-1) in R^d: z = eps / ||eps||, eps ~ N(0, I)."""

    arg_constraints: dict = {}
    support = sphere
    has_rsample = True

    def __init__(self, d: int, like: torch.Tensor, validate_args=None):
        self.d, self._like = d, like
        super().__init__(torch.Size(), torch.Size((d,)), validate_args=validate_args)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        eps = torch.randn(self._extended_shape(sample_shape), dtype=self._like.dtype, device=self._like.device)
        return unit(eps)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return torch.full_like(value[..., 0], -log_sphere_area(self.d))

    @property
    def mean(self) -> torch.Tensor:
        return torch.zeros(self.d, dtype=self._like.dtype, device=self._like.device)

    @property
    def variance(self) -> torch.Tensor:
        return torch.full((self.d,), 1 / self.d, dtype=self._like.dtype, device=self._like.device)

    def entropy(self) -> torch.Tensor:
        return torch.tensor(log_sphere_area(self.d), dtype=self._like.dtype, device=self._like.device)


class PowerSpherical(Distribution):
    """Power Spherical(mu, kappa) on S^(d-1): density C(kappa, d) (1 + mu^T z)^kappa.

    loc mu: (*batch, d) unit vectors; scale kappa: (*batch,) > 0. With
    alpha = (d - 1)/2 + kappa and beta = (d - 1)/2 (De Cao & Aziz 2020, alg. 1):
        t = 2 w - 1, w ~ Beta(alpha, beta)       (implicit reparameterization, torch)
        y = [t, sqrt(1 - t^2) v], v ~ uniform on S^(d-2)
        z = (I - 2 u u^T) y, u = (e_1 - mu) / ||e_1 - mu||  (Householder: e_1 -> mu)
    log C = -[(alpha + beta) log 2 + beta log pi + lgamma(alpha) - lgamma(alpha + beta)].
    """

    arg_constraints = {"scale": constraints.positive}
    support = sphere
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args=None):
        self.loc, self.scale = loc, scale
        batch = torch.broadcast_shapes(loc.shape[:-1], scale.shape)
        super().__init__(batch, loc.shape[-1:], validate_args=validate_args)

    @property
    def d(self) -> int:
        return self.loc.shape[-1]

    def _ab(self) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = (self.d - 1) / 2 + self.scale  # (*batch,)
        return alpha, torch.full_like(alpha, (self.d - 1) / 2)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)  # (*S, *batch, d)
        alpha, beta = (c.expand(self.batch_shape) for c in self._ab())
        w = Beta(alpha, beta, validate_args=False).rsample(sample_shape).unsqueeze(-1)  # (*S, *batch, 1)
        v = unit(torch.randn(shape[:-1] + (self.d - 1,), dtype=w.dtype, device=w.device))
        y = torch.cat([2 * w - 1, 2 * torch.sqrt(w * (1 - w)) * v], -1)  # sqrt(1 - t^2), t = 2w - 1
        e1 = torch.zeros_like(self.loc)
        e1[..., 0] = 1
        u = unit(e1 - self.loc)  # (*batch, d); zero when mu = e_1: no reflection needed
        return y - 2 * (y * u).sum(-1, keepdim=True) * u

    def log_normalizer(self) -> torch.Tensor:
        alpha, beta = self._ab()
        return -((alpha + beta) * math.log(2) + beta * math.log(math.pi) + torch.lgamma(alpha) - torch.lgamma(alpha + beta))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        t = (self.loc * value).sum(-1).clamp_min(-1 + torch.finfo(value.dtype).eps)
        return self.log_normalizer() + self.scale * torch.log1p(t)

    def entropy(self) -> torch.Tensor:
        """H = -log C - kappa (log 2 + psi(alpha) - psi(alpha + beta))."""
        alpha, beta = self._ab()
        return -self.log_normalizer() - self.scale * (math.log(2) + torch.digamma(alpha) - torch.digamma(alpha + beta))

    def _t_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """E[t] and E[t^2] for t = mu^T z = 2w - 1, each (*batch, 1)."""
        alpha, beta = self._ab()
        mean = (alpha - beta) / (alpha + beta)
        var = 4 * alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1))
        return mean.unsqueeze(-1), (var + mean**2).unsqueeze(-1)

    @property
    def mean(self) -> torch.Tensor:
        """E[z] = E[t] mu."""
        return self._t_moments()[0] * self.loc

    @property
    def variance(self) -> torch.Tensor:
        """diag Cov[z], from E[z z^T] = E[t^2] mu mu^T + (1 - E[t^2]) / (d - 1) (I - mu mu^T)."""
        mean_t, sq_t = self._t_moments()
        mu2 = self.loc**2
        return sq_t * mu2 + (1 - sq_t) / (self.d - 1) * (1 - mu2) - (mean_t * self.loc) ** 2


@register_kl(PowerSpherical, HypersphericalUniform)
def kl_power_spherical_uniform(q: PowerSpherical, p: HypersphericalUniform) -> torch.Tensor:
    """KL(q || uniform on S^(d-1)) = log |S^(d-1)| - H(q) (De Cao & Aziz 2020, sec. 4)."""
    return log_sphere_area(q.d) - q.entropy()


@register("spherical")
class Spherical(Family):
    """q(z|x) = PowerSpherical(mu(x), kappa(x)) on S^(D-1), p(z) = uniform on S^(D-1).

    The encoder emits ``dim + 1`` numbers: a direction (normalized to mu), then a raw
    concentration mapped to kappa by softplus + floor. The KL is closed form; the
    dimensions are coupled by the unit norm, so ``kl_per_dim`` is None. ``dim`` >= 2.
    """

    def __init__(self, dim: int):
        super().__init__(dim)
        if dim < 2:
            raise ConfigError(f"latent.family=spherical needs latent.dim >= 2 (S^0 is two points), got {dim}")

    @property
    def raw_size(self) -> int:
        return self.dim + 1

    def posterior(self, raw: torch.Tensor) -> PowerSpherical:
        if raw.shape[-1] != self.raw_size:
            raise ValueError(f"{self.name}: raw has {raw.shape[-1]} columns, expected {self.raw_size}")
        return PowerSpherical(unit(raw[..., : self.dim]), positive(raw[..., self.dim]), validate_args=False)

    def prior(self) -> HypersphericalUniform:
        return HypersphericalUniform(self.dim, self._anchor, validate_args=False)

    def point(self, q: PowerSpherical) -> torch.Tensor:
        """The mode mu, which lies on the sphere (the mean E[t] mu lies inside it)."""
        return q.loc

    def traverse(self, point: torch.Tensor, d: int, steps: int) -> torch.Tensor:
        """Rotate ``point`` towards +-e_d along a great circle, angles in [-pi/2, pi/2]."""
        e = torch.zeros_like(point)
        e[d] = 1
        w = unit(e - (e @ point) * point)  # (D,), orthogonal to point
        theta = torch.linspace(-math.pi / 2, math.pi / 2, steps, dtype=point.dtype, device=point.device).unsqueeze(-1)
        return torch.cos(theta) * point + torch.sin(theta) * w

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, kind: str = "linear") -> torch.Tensor:
        """The straight path projected back onto the sphere."""
        self.check_kind(kind)
        return unit(linear_path(a, b, t))

    def constrain(self, z: torch.Tensor) -> torch.Tensor:
        """Onto the unit sphere, z / ||z|| (the zero vector, which has no direction, goes to e_1)."""
        e1 = torch.zeros_like(z)
        e1[..., 0] = 1
        z = unit(z)
        return torch.where(z.norm(dim=-1, keepdim=True) > 0, z, e1)

    def sample_prior(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """n uniform draws on the sphere; a temperature has no meaning for a uniform prior."""
        return self.prior().sample((n,))
