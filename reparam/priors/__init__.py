"""Priors p(z): the family's own fixed prior, or a learned one (a module with parameters).

- ``standard``: the latent family's prior (N(0, I) for the Gaussian), no parameters;
- ``mog``: a mixture of K Gaussians with learned weights, means and scales;
- ``vamp``: the VampPrior (Tomczak & Welling 2018), a mixture of the variational
  posteriors at K learned pseudo-inputs.

A prior is chosen by ``prior.name`` and ``prior.components``; each registers itself
(``base.register``) and importing the package imports every module in this folder.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import REGISTRY, Prior, register

for _module in pkgutil.iter_modules(__path__):  # each module registers its prior
    importlib.import_module(f"{__name__}.{_module.name}")


def get(name: str, family, x_shape: tuple[int, ...], components: int = 0) -> Prior:
    """Build prior ``name`` for latents of ``family`` (and, for a VampPrior, inputs of ``x_shape``)."""
    cls = REGISTRY.lookup(name)
    return cls(family, tuple(x_shape), components or cls.default_components)


def names() -> list[str]:
    return REGISTRY.names()


def check(cfg, family) -> None:
    """The ``prior`` config section against the family (ConfigError, one line)."""
    REGISTRY.lookup(cfg.name).check(cfg, family)


__all__ = ["REGISTRY", "Prior", "check", "get", "names", "register"]
