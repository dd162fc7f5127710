"""Latent families: q(z|x) and p(z) as torch Distributions.

Public contract::

    fam = reparam.latents.get("gaussian", dim=D)
    fam.raw_size                 # raw numbers the encoder emits per example
    q = fam.posterior(raw)       # raw (*batch, raw_size) -> batch_shape (*batch,), event_shape (D,)
    z = q.rsample((K,))          # (K, *batch, D), differentiable in raw
    p = fam.prior()              # event_shape (D,)
    kl = fam.kl(q, z)            # (*batch,): closed form when registered, else Monte Carlo
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import Family

REGISTRY: Registry[Family] = Registry("latent family")
register = REGISTRY.register


def get(name: str, dim: int, **options: Any) -> Family:
    """Build the family registered as ``name`` with latent dimension ``dim``."""
    return REGISTRY.build(name, dim, **options)


def names() -> list[str]:
    """Names of every registered latent family."""
    return REGISTRY.names()


def options(name: str) -> dict[str, Any]:
    """The options (with defaults) that family ``name`` accepts."""
    return REGISTRY.options(name)


from . import gaussian  # noqa: E402,F401  (registers the families)
from . import gaussian_full  # noqa: E402,F401
from . import laplace  # noqa: E402,F401
from . import bernoulli  # noqa: E402,F401
from . import categorical  # noqa: E402,F401
from . import beta  # noqa: E402,F401
from . import kumaraswamy  # noqa: E402,F401
from . import dirichlet  # noqa: E402,F401
from . import dirichlet_laplace  # noqa: E402,F401
from . import spherical  # noqa: E402,F401
from . import bernoulli_exact  # noqa: E402,F401
from . import categorical_exact  # noqa: E402,F401

__all__ = ["Family", "get", "names", "options", "register"]
