"""The prior contract: a module that gives p(z) for a family, and draws from it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.distributions import Distribution

from ..errors import ConfigError, require
from ..registry import Registry

REGISTRY: Registry = Registry("prior.name")
register = REGISTRY.register
Posterior = Callable[[torch.Tensor], Distribution]  # x (K, *x_shape) -> q(z|x), batch (K,)


class Prior(nn.Module):
    """p(z) as a module: ``distribution(family, posterior)`` -> a Distribution with event (D,).

    ``posterior`` is the model's q(z|x) as a function of inputs (a VampPrior mixes it at
    its pseudo-inputs). The family is passed at each call, never held: the VAE owns it.
    A learned prior's parameters are trained with the model and saved in its weights.
    ``y`` ((relaxed) one-hot labels (*B, C) of a conditional model, or None) is read by a
    prior of the labels, p(z|y) (``conditional``); the others are p(z) whatever the label.
    """

    conditional = False

    learned = True
    default_components = 0

    def __init__(self, family, x_shape: tuple[int, ...], components: int):
        super().__init__()
        self.components = components

    @classmethod
    def check(cls, cfg, family) -> None:
        """ConfigError (one line) when this prior cannot serve ``family`` or the section is invalid."""
        require(cfg.components >= 0, f"prior.components must be >= 1, got {cfg.components}")
        if not cls.learned:
            require(cfg.components == 0, f"prior.components applies to a learned prior (prior.name=mog or vamp), not {cfg.name}")
            return
        mismatch = family.kl_mismatch()
        if mismatch:
            raise ConfigError(f"prior.name={cfg.name} needs the KL of the posterior and the prior densities, but {mismatch}")

    def distribution(self, family, posterior: Posterior, y: torch.Tensor | None = None) -> Distribution:
        raise NotImplementedError

    def sample(self, n: int, temperature: float, family, posterior: Posterior, y: torch.Tensor | None = None) -> torch.Tensor:
        """n draws of p(z) at a temperature, (n, D), for pictures (no gradient)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"components={self.components}" if self.learned else ""
