"""Models: the VAE (encoder, latent family with an optional flow and learned prior, decoder,
likelihood), the hierarchical VAE (several stochastic layers), and ``build`` from a config.
A model holds networks and distributions, no loss."""

from __future__ import annotations

from .build import build, check
from .hierarchical import HierarchicalVAE
from .vae import VAE

__all__ = ["HierarchicalVAE", "VAE", "build", "check"]
