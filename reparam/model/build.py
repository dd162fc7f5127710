"""Assemble a VAE from a resolved config."""

from __future__ import annotations

from torch import nn

from .. import flows, latents, likelihoods, priors
from ..networks import ARCHS
from .vae import VAE


def build(cfg, x_shape: tuple[int, ...], encoder: nn.Module | None = None, decoder: nn.Module | None = None) -> VAE:
    """A VAE from a resolved config (``reparam.config.Config``) and the data's image shape (channels-last).

    ``model.arch`` picks the networks; ``encoder`` or ``decoder`` replaces the configured
    one with any module honouring the contract: encoder x (*batch, *x_shape) ->
    (*batch, raw_size) (the family's raw numbers, then the flow's), decoder z (*batch, D)
    -> (*batch, head.raw_size). ``latent.flow`` adds a flow to the posterior and
    ``prior.name`` chooses p(z).
    """
    family = latents.get(cfg.latent.family, cfg.latent.dim, **cfg.latent.options)
    head = likelihoods.get(cfg.likelihood.name, x_shape, **cfg.likelihood.options)
    flow = None if cfg.latent.flow == "none" else flows.get(cfg.latent.flow, family.dim, cfg.latent.flow_steps)
    prior = priors.get(cfg.prior.name, family, x_shape, cfg.prior.components)
    raw_size = family.raw_size + (0 if flow is None else flow.raw_size)
    if encoder is None or decoder is None:
        enc, dec = ARCHS.lookup(cfg.model.arch)(cfg.model, tuple(x_shape), raw_size, family.dim, head.raw_size)
        encoder = enc if encoder is None else encoder
        decoder = dec if decoder is None else decoder
    return VAE(encoder, family, decoder, head, prior, flow)
