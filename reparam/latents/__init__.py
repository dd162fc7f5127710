"""Latent families: q(z|x) and p(z) as torch Distributions.

Public contract::

    fam = reparam.latents.get("gaussian", dim=D)
    fam.raw_size                 # raw numbers the encoder emits per example
    q = fam.posterior(raw)       # raw (*batch, raw_size) -> batch_shape (*batch,), event_shape (D,)
    z = q.rsample((K,))          # (K, *batch, D), differentiable in raw
    p = fam.prior()              # event_shape (D,)
    kl = fam.kl(q, z)            # (*batch,): closed form when registered, else Monte Carlo

A family is one file in this folder that registers itself with ``@register("name")``
(``base.py``); importing the package imports every module in it, so the registry is
complete and adding a family touches nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .base import REGISTRY, Family, register

for _module in pkgutil.iter_modules(__path__):  # each family module registers its families
    importlib.import_module(f"{__name__}.{_module.name}")


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
