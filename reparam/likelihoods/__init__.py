"""Observation models p(x|z): decoder raw outputs -> a torch Distribution over one image.

One file per head (Bernoulli, Gaussian, continuous Bernoulli, the discretized logistic
mixture, and ``table``: one likelihood per column of a table); each registers itself (``base.register``), and importing the package imports
every module in this folder. See ``base.Head`` for the contract.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from ..errors import ConfigError
from .base import REGISTRY, Head, check_unit, register

for _module in pkgutil.iter_modules(__path__):  # each head module registers its head
    importlib.import_module(f"{__name__}.{_module.name}")


def get(name: str, x_shape: tuple[int, ...], columns: list[str] | None = None, **options: Any) -> Head:
    """Build the head registered as ``name`` for examples of shape ``x_shape``.

    ``columns`` (a table's column kinds, ``reparam.tables.Columns.layout()``) goes to a head
    that models tables (``Head.takes_columns``); any other head refuses it.
    """
    if columns is None:
        return REGISTRY.build(name, tuple(x_shape), **options)
    if not getattr(REGISTRY.lookup(name), "takes_columns", False):
        raise ConfigError(f"likelihood.name={name} models images; the columns of a table take likelihood.name=table")
    return REGISTRY.build(name, tuple(x_shape), list(columns), **options)


def names() -> list[str]:
    """Names of every registered likelihood head."""
    return REGISTRY.names()


def options(name: str) -> dict[str, Any]:
    """The options (with defaults) that head ``name`` accepts."""
    return REGISTRY.options(name)


__all__ = ["REGISTRY", "Head", "check_unit", "get", "names", "options", "register"]
