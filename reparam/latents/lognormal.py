"""Log-normal latents: positive coordinates, the Gaussian trick behind an exponential."""

from __future__ import annotations

import math

import torch
from torch.distributions import Independent, LogNormal

from ..numerics import bounded, scale_from_logvar
from .base import Family, register

#: log z = loc + scale * eps stays within +-(LOC_LIMIT + 5.4 SCALE_MAX) ~ +-32 for float32's
#: extreme normal draws (|eps| < 5.4), so z and its density stay finite.
LOC_LIMIT, SCALE_MAX = 10.0, 4.0


@register("lognormal")
class LogNormalFamily(Family):
    """q(z|x) = prod_d LogNormal(loc_d, scale_d), p(z) = prod_d LogNormal(0, 1), z in (0, inf)^D.

    The encoder emits ``2 * dim`` numbers: loc (through LOC_LIMIT tanh(. / LOC_LIMIT)), then
    logvar (scale = exp(logvar / 2) <= SCALE_MAX), so that z stays finite in float32.
    z = exp(loc + scale * eps), eps ~ N(0, I): the Gaussian trick behind an exponential
    (torch's ``LogNormal.rsample``). Both distributions are the same exp transform of a
    Normal, so torch's registered KL is the Gaussian one, closed form per dimension.
    Traversals, interpolations and sliders come from the positive support (``Views``).
    """

    n_params = 2

    def posterior(self, raw: torch.Tensor) -> Independent:
        loc, logvar = self.split(raw)  # (*batch, D) each
        scale = scale_from_logvar(logvar, logvar_max=2 * math.log(SCALE_MAX))
        return Independent(LogNormal(bounded(loc, LOC_LIMIT), scale, validate_args=False), 1)

    def prior(self) -> Independent:
        return Independent(LogNormal(self._full(0.0), self._full(1.0), validate_args=False), 1)
