"""Models: the VAE (encoder, latent family with an optional flow and learned prior, decoder,
likelihood), and ``build`` from a config. A model holds networks and distributions, no loss."""

from __future__ import annotations

from .build import build
from .vae import VAE

__all__ = ["VAE", "build"]
