"""The VAE: encoder, latent family (optionally a flow and a learned prior), decoder, likelihood. No loss."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution, kl_divergence

from ..flows import Flow, FlowPosterior
from ..latents import Family
from ..likelihoods import Head
from ..priors import Prior
from ..priors.standard import StandardPrior
from .contract import Defaults


def prior_kl(q: Distribution, p: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q || p) per example: closed form where one is registered, else Monte Carlo from z (K, B, D);
    ValueError when there is neither."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        if z is None:
            raise ValueError("no closed-form KL to this prior: pass samples z") from None
        return (q.log_prob(z) - p.log_prob(z)).mean(0)


class VAE(Defaults, nn.Module):
    """x -> q(z|x) -> z -> p(x|z), with p(z) from the prior module (the family's own by default).

    Shapes: ``posterior(x)`` takes x (B, *x_shape) and returns batch_shape (B,),
    event_shape (D,); ``likelihood(z)`` takes z (*S, B, D) and returns batch_shape
    (*S, B), event_shape x_shape. The encoder emits ``raw_size`` numbers per example:
    the family's, then the flow's (if any). The model-level hooks (``point``,
    ``unit_mean``, ``kl_per_dim``, ``sample_prior``) are what evaluation, the report and
    the explorer read; they defer to the family unless a flow or a learned prior changes
    the answer.
    """

    encoder: nn.Module
    family: Family
    decoder: nn.Module
    head: Head
    config: Any  # the run's Config, set by reparam.runs.load

    def __init__(self, encoder: nn.Module, family: Family, decoder: nn.Module, head: Head, prior: Prior | None = None, flow: Flow | None = None):
        super().__init__()
        self.encoder, self.family, self.decoder, self.head = encoder, family, decoder, head
        self.prior_model = StandardPrior(family, head.x_shape, 0) if prior is None else prior
        self.flow = flow

    @property
    def auto_init(self) -> str:
        """What ``model.init=auto`` starts the networks with (``reparam.model.init``): He's start,
        unless the flow's or the encoder's measurements asked for another."""
        return (self.flow.auto_init if self.flow is not None else None) or super().auto_init

    @property
    def raw_size(self) -> int:
        """Numbers the encoder emits per example: the family's, then the flow's."""
        return self.family.raw_size + (0 if self.flow is None else self.flow.raw_size)

    @property
    def density_everywhere(self) -> bool:
        """Whether log q(z|x) can be evaluated at any z (not only at the posterior's own draws)."""
        return self.flow is None

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).float()  # fp32 even under autocast

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's raw numbers for x (B, *x_shape): (B, raw_size), float32."""
        return self._raw(x)

    def base_posterior(self, x: torch.Tensor) -> Distribution:
        """The family's q0(z|x), before any flow (a VampPrior mixes it)."""
        return self.family.posterior(self._raw(x)[..., : self.family.raw_size])

    def posterior(self, x: torch.Tensor, stop: bool = False) -> Distribution:
        """q(z|x); with ``stop`` the inference networks' weights are detached (x is data)."""
        if stop:
            with torch.no_grad():
                return self.posterior(x)
        raw = self._raw(x)
        q0 = self.family.posterior(raw[..., : self.family.raw_size])
        return q0 if self.flow is None else FlowPosterior(q0, self.flow, raw[..., self.family.raw_size :])

    def prior(self) -> Distribution:
        """p(z)."""
        return self.prior_model.distribution(self.family, self.base_posterior)

    def likelihood(self, z: torch.Tensor) -> Distribution:
        """p(x|z)."""
        return self.head(self.decoder(self.family.decoder_input(z)).float())

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The mean image of p(x|z), shape (*batch, *x_shape)."""
        return self.head.mean(self.decoder(self.family.decoder_input(z)).float())

    def _standard(self) -> bool:
        return self.flow is None and not self.prior_model.learned

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q || p(z)) per example: closed form where one is registered, else Monte Carlo from z (K, B, D).

        With the family's own prior the family decides (a relaxed family's discrete KL);
        otherwise ValueError when there is no closed form and no z is given.
        """
        if self._standard():
            return self.family.kl(q, z)
        return prior_kl(q, self.prior(), z)

    def kl_per_dim(self, q: Distribution) -> torch.Tensor | None:
        """KL per latent dimension, (B, D), where it exists in closed form (the family's own prior, no flow)."""
        return self.family.kl_per_dim(q) if self._standard() else None

    def log_prob_per_dim(self, d: Distribution, z: torch.Tensor) -> torch.Tensor | None:
        """log d(z_d) per dimension where d factorizes (see ``Family.log_prob_per_dim``)."""
        return self.family.log_prob_per_dim(d, z)

    def point(self, q: Distribution) -> torch.Tensor:
        """A representative latent of q for pictures, (B, D): the family's, through the flow."""
        if isinstance(q, FlowPosterior):
            return q.point(self.family.point(q.base))
        return self.family.point(q)

    def unit_mean(self, q: Distribution) -> torch.Tensor:
        """The posterior mean of each unit, (B, D), for active units (the flow's point for a flow)."""
        return self.point(q) if isinstance(q, FlowPosterior) else self.family.unit_mean(q)

    def sample_prior(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """n draws of p(z) at a temperature, (n, D), for pictures."""
        return self.prior_model.sample(n, temperature, self.family, self.base_posterior)

    def on_step(self, step: int) -> None:
        self.family.on_step(step)

    def with_family(self, family: Family) -> VAE | None:
        """The same networks with another latent family of the same raw layout (shares the modules),
        or None where a flow or a learned prior ties the model to its family."""
        if family is self.family:
            return self
        if not self._standard():
            return None
        return VAE(self.encoder, family, self.decoder, self.head).train(self.training)
