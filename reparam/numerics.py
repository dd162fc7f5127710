"""The numerical policy, in one place.

Scales and concentrations are kept away from zero here and nowhere else, so a
family or likelihood never invents its own epsilon.
"""

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
