"""Normalizing flows in the posterior: q(z|x) = a base family's q0 pushed through K invertible steps.

- ``planar``: f(z) = z + u h(w^T z + b) (Rezende & Mohamed 2015), u, w, b from the encoder;
- ``iaf``: inverse autoregressive flow (Kingma et al. 2016), a MADE conditioned on a
  context vector from the encoder.

Chosen by ``latent.flow`` and ``latent.flow_steps``; each registers itself
(``base.register``), and importing the package imports every module in this folder.
"""

from __future__ import annotations

import importlib
import pkgutil

from torch.distributions import constraints

from ..errors import ConfigError, require
from .base import REGISTRY, Flow, FlowPosterior, register

for _module in pkgutil.iter_modules(__path__):  # each module registers its flow
    importlib.import_module(f"{__name__}.{_module.name}")


def get(name: str, dim: int, steps: int = 0) -> Flow:
    """Build flow ``name`` on R^dim with ``steps`` steps (0: the flow's default)."""
    cls = REGISTRY.lookup(name)
    return cls(dim, steps or cls.default_steps)


def names() -> list[str]:
    return ["none", *REGISTRY.names()]


def check(cfg, family) -> None:
    """``latent.flow`` and ``latent.flow_steps`` against the family (ConfigError, one line)."""
    if cfg.flow != "none":
        REGISTRY.lookup(cfg.flow)
    require(cfg.flow_steps >= 0, f"latent.flow_steps must be >= 1, got {cfg.flow_steps}")
    require(cfg.flow != "none" or cfg.flow_steps == 0, "latent.flow_steps applies to a flow: set latent.flow=planar or iaf")
    if cfg.flow == "none":
        return
    support = family.prior().support
    if getattr(support, "base_constraint", support) is not constraints.real or not family.has_rsample:
        raise ConfigError(f"latent.flow={cfg.flow} moves latents on R^D by a reparameterized draw; latent.family={family.name} has latents in {support}")
    mismatch = family.kl_mismatch()
    if mismatch:
        raise ConfigError(f"latent.flow={cfg.flow} needs the posterior's own density for the KL, but {mismatch}")


__all__ = ["REGISTRY", "Flow", "FlowPosterior", "get", "names", "register"]
