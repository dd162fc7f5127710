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


def scale_from_logvar(logvar: torch.Tensor) -> torch.Tensor:
    """sigma = exp(0.5 * logvar), with logvar clamped to [LOGVAR_MIN, LOGVAR_MAX]."""
    return torch.exp(0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))


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
