"""Models: the VAE (encoder, latent family with an optional flow and learned prior, decoder,
likelihood), the hierarchical VAE (several stochastic layers), the conditional VAE (labels
in the encoder and decoder; M2 with a classifier), and ``build`` from a config.
A model holds networks and distributions, no loss."""

from __future__ import annotations

from .build import build, check
from .conditional import ConditionalVAE, LabelledView
from .hierarchical import HierarchicalVAE
from .vae import VAE

__all__ = ["ConditionalVAE", "HierarchicalVAE", "LabelledView", "VAE", "build", "check"]
