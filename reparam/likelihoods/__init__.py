"""Observation models p(x|z): decoder raw outputs -> a torch Distribution over one image.

One file per head (Bernoulli, Gaussian, continuous Bernoulli, the discretized logistic
mixture); each registers itself (``base.register``). See ``base.Head`` for the contract.
"""

from __future__ import annotations

from typing import Any

from . import bernoulli, continuous_bernoulli, gaussian, logistic  # noqa: F401  (each registers its head)
from .base import REGISTRY, Head, check_unit, register


def get(name: str, x_shape: tuple[int, ...], **options: Any) -> Head:
    """Build the head registered as ``name`` for images of shape ``x_shape``."""
    return REGISTRY.build(name, tuple(x_shape), **options)


def names() -> list[str]:
    """Names of every registered likelihood head."""
    return REGISTRY.names()


def options(name: str) -> dict[str, Any]:
    """The options (with defaults) that head ``name`` accepts."""
    return REGISTRY.options(name)


__all__ = ["REGISTRY", "Head", "check_unit", "get", "names", "options", "register"]
