"""Latent families: q(z|x) and p(z) as torch Distributions.

Public contract::

    fam = reparam.latents.get("gaussian", dim=D)
    fam.raw_size                 # raw numbers the encoder emits per example
    q = fam.posterior(raw)       # raw (*batch, raw_size) -> batch_shape (*batch,), event_shape (D,)
    z = q.rsample((K,))          # (K, *batch, D), differentiable in raw
    p = fam.prior()              # event_shape (D,)
    kl = fam.kl(q, z)            # (*batch,): closed form when registered, else Monte Carlo

A family is one file that registers itself with ``@register("name")`` (``base.py``); this
package imports every family module so that the registry is complete.
"""

from __future__ import annotations

from typing import Any

from . import (  # noqa: F401  (each module registers its families)
    bernoulli,
    bernoulli_exact,
    beta,
    categorical,
    categorical_exact,
    dirichlet,
    dirichlet_laplace,
    gaussian,
    gaussian_full,
    kumaraswamy,
    laplace,
    lognormal,
    spherical,
)
from .base import REGISTRY, Family, register


def get(name: str, dim: int, **options: Any) -> Family:
    """Build the family registered as ``name`` with latent dimension ``dim``."""
    return REGISTRY.build(name, dim, **options)


def names() -> list[str]:
    """Names of every registered latent family."""
    return REGISTRY.names()


def options(name: str) -> dict[str, Any]:
    """The options (with defaults) that family ``name`` accepts."""
    return REGISTRY.options(name)


__all__ = ["REGISTRY", "Family", "get", "names", "options", "register"]
