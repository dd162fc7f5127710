"""The numerical policy, in one place.

Scales and concentrations are kept away from zero here and nowhere else, so a
family or likelihood never invents its own epsilon.
"""

import math

import torch
import torch.nn.functional as F

#: Log-variances are clamped to this range before exponentiation: scale stays in
#: [exp(-10), exp(10)] ~ [4.5e-5, 2.2e4], far from float32 underflow and overflow.
LOGVAR_MIN, LOGVAR_MAX = -20.0, 20.0
#: Added to every softplus-produced positive parameter.
POSITIVE_FLOOR = 1e-4


def scale_from_logvar(logvar: torch.Tensor, logvar_max: float = LOGVAR_MAX) -> torch.Tensor:
    """sigma = exp(0.5 * logvar), with logvar clamped to [LOGVAR_MIN, logvar_max]."""
    return torch.exp(0.5 * logvar.clamp(LOGVAR_MIN, logvar_max))


def bounded(raw: torch.Tensor, limit: float) -> torch.Tensor:
    """limit * tanh(raw / limit): a smooth map from R onto (-limit, limit), the identity near 0."""
    return limit * torch.tanh(raw / limit)


def positive(raw: torch.Tensor, floor: float = POSITIVE_FLOOR) -> torch.Tensor:
    """softplus(raw) + floor: a smooth map from R to (floor, inf)."""
    return F.softplus(raw) + floor


def clamp_probs(p: torch.Tensor) -> torch.Tensor:
    """Probabilities (or uniforms) kept inside [eps, 1 - eps] of their dtype."""
    eps = torch.finfo(p.dtype).eps
    return p.clamp(min=eps, max=1 - eps)


def uniform(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) noise of ``shape`` on like's device and dtype, clamped away from 0 and 1."""
    return clamp_probs(torch.rand(shape, dtype=like.dtype, device=like.device))


def log_gamma(concentration: torch.Tensor) -> torch.Tensor:
    """log G for G ~ Gamma(c, 1), one draw per element of c, reparameterized, finite for any c > 0.

    For c < 1 a Gamma draw underflows in float32 (G ~ U^(1/c): c = 0.02 gives 1e-50), so
    the log is drawn directly by shape augmentation, G_c = G_(c+1) U^(1/c) (Marsaglia &
    Tsang 2000): log G = log G_(c+1) + log(U) / c. The gradient is torch's implicit Gamma
    gradient for G_(c+1) plus the explicit path through log(U) / c, an exact
    reparameterization of the same distribution (Naesseth et al. 2017, section 5).
    """
    boost = concentration < 1
    shape = torch.where(boost, concentration + 1, concentration)
    g = torch.distributions.Gamma(shape, torch.ones_like(shape), validate_args=False).rsample()
    return g.log() + torch.where(boost, uniform(concentration.shape, concentration).log() / concentration, 0.0)


def log_softplus(x: torch.Tensor) -> torch.Tensor:
    """log(softplus(x)) = log(log(1 + e^x)), finite where softplus(x) underflows (then it is x)."""
    small = x < -20.0  # log(1 + e^x) = e^x (1 - e^x / 2 + ...)
    tail = torch.where(small, x, -20.0)
    return torch.where(small, tail - torch.exp(tail) / 2, torch.log(F.softplus(torch.where(small, -20.0, x))))


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012).

    x is kept below -tiny so the result stays finite; each branch of the ``where`` sees
    only inputs it handles, so neither sends a NaN gradient through the other.
    """
    x = x.clamp(max=-torch.finfo(x.dtype).tiny)
    near = x > -math.log(2)
    a = torch.log(-torch.expm1(torch.where(near, x, -1.0)))
    b = torch.log1p(-torch.exp(torch.where(near, -1.0, x)))
    return torch.where(near, a, b)


def unit(v: torch.Tensor) -> torch.Tensor:
    """v / ||v|| over the last dimension; the zero vector stays zero instead of NaN."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny ** 0.5)


def log_neg_log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(-log(1 - exp(x))) for x < 0, finite where exp(x) underflows (then it is x)."""
    far = x < math.log(torch.finfo(x.dtype).tiny)  # -log(1 - e^x) = e^x (1 + e^x / 2 + ...) below the dtype's range
    return torch.where(far, x, torch.log(-log1mexp(torch.where(far, -1.0, x))))


def log1mexp_neg_exp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-exp(x))) for any real x, accurate where exp(x) underflows (then it is x)."""
    small = x < -20.0  # 1 - exp(-e^x) = e^x (1 - e^x / 2 + ...): keep two terms
    tail = torch.where(small, x, -20.0)
    return torch.where(small, tail - torch.exp(tail) / 2, torch.log(-torch.expm1(-torch.exp(torch.where(small, -20.0, x)))))


def tanh_sinh(step: float = 0.2, log_floor: float = -700.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the tanh-sinh (double exponential) rule on (0, 1), in float64.

    v = (1 + tanh(pi/2 sinh t)) / 2 at t = k * step, weight step * dv/dt (Takahasi & Mori 1974).
    Nodes crowd doubly exponentially towards both ends, so integrands with logarithmic or
    power singularities there converge fast. Returns (log v, w), nodes with log v > log_floor.
    """
    t = torch.arange(-6.5, 6.5 + step / 2, step, dtype=torch.float64)
    s = math.pi / 2 * torch.sinh(t)
    log_v, log_1mv = -F.softplus(-2 * s), -F.softplus(2 * s)  # v = sigmoid(2 s), accurate near 0 and 1
    weight = (log_v + log_1mv + torch.log(math.pi * step * torch.cosh(t))).exp()  # dv/dt = v (1 - v) pi cosh t
    keep = log_v > log_floor
    return log_v[keep], weight[keep]
