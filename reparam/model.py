"""The VAE: encoder, latent family, decoder and likelihood head. It holds no loss."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from . import latents, likelihoods
from .latents import Family
from .likelihoods import Head
from .networks import ARCHS


class VAE(nn.Module):
    """x -> q(z|x) -> z -> p(x|z), with p(z) from the family.

    Shapes: ``posterior(x)`` takes x (B, *x_shape) and returns batch_shape (B,),
    event_shape (D,); ``likelihood(z)`` takes z (*S, B, D) and returns batch_shape
    (*S, B), event_shape x_shape.
    """

    encoder: nn.Module
    family: Family
    decoder: nn.Module
    head: Head
    config: Any  # the run's Config, set by reparam.runs.load

    def __init__(self, encoder: nn.Module, family: Family, decoder: nn.Module, head: Head):
        super().__init__()
        self.encoder, self.family, self.decoder, self.head = encoder, family, decoder, head

    @property
    def x_shape(self) -> tuple[int, ...]:
        return self.head.x_shape

    def posterior(self, x: torch.Tensor) -> Distribution:
        """q(z|x)."""
        return self.family.posterior(self.encoder(x).float())  # fp32 even under autocast

    def prior(self) -> Distribution:
        """p(z)."""
        return self.family.prior()

    def likelihood(self, z: torch.Tensor) -> Distribution:
        """p(x|z)."""
        return self.head(self.decoder(self.family.decoder_input(z)).float())

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The mean image of p(x|z), shape (*batch, *x_shape)."""
        return self.head.mean(self.decoder(self.family.decoder_input(z)).float())

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q || p(z)) per example (closed form, or Monte Carlo from z)."""
        return self.family.kl(q, z)

    def on_step(self, step: int) -> None:
        self.family.on_step(step)

    def with_family(self, family: Family) -> VAE:
        """The same networks with another latent family of the same raw layout (shares the modules)."""
        return self if family is self.family else VAE(self.encoder, family, self.decoder, self.head).train(self.training)


def build(cfg, x_shape: tuple[int, ...], encoder: nn.Module | None = None, decoder: nn.Module | None = None) -> VAE:
    """Assemble a VAE from a resolved config (``reparam.config.Config``) and the data's image shape (channels-last).

    ``model.arch`` picks the networks; ``encoder`` or ``decoder`` replaces the configured
    one with any module honouring the contract: encoder x (*batch, *x_shape) ->
    (*batch, family.raw_size), decoder z (*batch, D) -> (*batch, head.raw_size).
    """
    family = latents.get(cfg.latent.family, cfg.latent.dim, **cfg.latent.options)
    head = likelihoods.get(cfg.likelihood.name, x_shape, **cfg.likelihood.options)
    if encoder is None or decoder is None:
        enc, dec = ARCHS.lookup(cfg.model.arch)(cfg.model, tuple(x_shape), family.raw_size, family.dim, head.raw_size)
        encoder = enc if encoder is None else encoder
        decoder = dec if decoder is None else decoder
    return VAE(encoder, family, decoder, head)
