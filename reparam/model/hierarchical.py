"""Hierarchical VAEs: L >= 2 stochastic layers, bottom-up inference (Burda et al. 2016, section 5).

Inference q(z_1|x) q(z_2|z_1) ... q(z_L|z_(L-1)); generation p(z_L) p(z_(L-1)|z_L) ...
p(z_1|z_2) p(x|z_1). Every conditional, in both directions, is the layer's family applied
to a network's raw outputs (``family.posterior(raw)``), so any family with a reparameterized
sample can sit at any layer; the top prior p(z_L) is a prior module (the family's own, or a
learned mixture of Gaussians: ``prior.name=mog``). The latent the bounds see
is the concatenation z = [z_1, ..., z_L] (*S, B, D_1 + ... + D_L) with the joint densities
below, so every bound, estimator and the importance-sampled log-likelihood work on it
unchanged. The views (report, explorer) drive the top layer z_L: decoding follows the
conditional means down to z_1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from torch.distributions import Distribution, constraints

from ..latents import Family
from ..priors import Prior
from ..priors.standard import StandardPrior
from .contract import Defaults


def no_posterior(x: torch.Tensor) -> Distribution:
    """The top layer has no q(z_L|x) of inputs alone: a prior that mixes the posterior at
    pseudo-inputs (a VampPrior) is refused for a hierarchy (``contract.REFUSED``)."""
    raise TypeError("a hierarchy's top prior cannot read q(z_L|x)")


def detached(module: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """module(inp) with the module's weights detached (the input keeps its graph)."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, (inp,))


class ChainPosterior(Distribution):
    """q(z|x) = q(z_1|x) prod_(l>1) q(z_l|z_(l-1)) over the concatenated z, batch (B,), event (sum D_l,).

    ``stop`` detaches the inference networks' weights (the input x and the draws z_(l-1)
    keep their paths): sticking the landing's log q with its parameters held fixed.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, model: HierarchicalVAE, q1: Distribution, stop: bool = False):
        self.model, self.q1, self.stop = model, q1, stop
        super().__init__(q1.batch_shape, torch.Size([model.latent_dim]), validate_args=False)

    def conditional(self, layer: int, below: torch.Tensor) -> Distribution:
        """q(z_layer | z_(layer-1) = below), layer >= 1 (0-based), batch below.shape[:-1]."""
        m = self.model
        net = m.up[layer - 1]
        inp = m.families[layer - 1].decoder_input(below)
        raw = detached(net, inp) if self.stop else net(inp)
        return m.families[layer].posterior(raw)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        z = [self.q1.rsample(sample_shape)]  # (*S, B, D_1)
        for layer in range(1, len(self.model.families)):
            z.append(self.conditional(layer, z[-1]).rsample())
        return torch.cat(z, -1)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        z = self.model.split(value)
        out = self.q1.log_prob(z[0])
        for layer in range(1, len(z)):
            out = out + self.conditional(layer, z[layer - 1]).log_prob(z[layer])
        return out

    def layers(self) -> list[Distribution]:
        """Each layer's posterior along the mean path (z_(l-1) at its family's point), bottom first."""
        out = [self.q1]
        for layer in range(1, len(self.model.families)):
            out.append(self.conditional(layer, self.model.families[layer - 1].point(out[-1])))
        return out


class ChainPrior(Distribution):
    """p(z) = p(z_L) prod_(l<L) p(z_l|z_(l+1)) over the concatenated z, event (sum D_l,)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, model: HierarchicalVAE):
        self.model = model
        super().__init__(torch.Size(), torch.Size([model.latent_dim]), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        z = self.model.split(value)
        out = self.model.top_prior().log_prob(z[-1])
        for layer in range(len(z) - 1):
            out = out + self.model.generative(layer, z[layer + 1]).log_prob(z[layer])
        return out

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Ancestral draws: z_L from the top prior, then each layer given the one above."""
        z = [self.model.top_prior().sample(sample_shape)]
        for layer in range(len(self.model.families) - 2, -1, -1):
            z.insert(0, self.model.generative(layer, z[0]).sample())
        return torch.cat(z, -1)


class HierarchicalVAE(Defaults, nn.Module):
    """A VAE with stochastic layers z_1 (D_1 = latent.dim) ... z_L (``model.stochastic``).

    Networks: ``encoder`` x -> raw of q(z_1|x), ``up[l]`` z_l -> raw of q(z_(l+1)|z_l),
    ``down[l]`` z_(l+1) -> raw of p(z_l|z_(l+1)), ``decoder`` z_1 -> raw of p(x|z_1) (each
    reads its input through the input layer's ``decoder_input``). ``families[l]`` is layer
    l's family (bottom first). Its members are the ``reparam.model.contract.Model``
    protocol: the views' hooks act on the top layer; ``layer_statistics`` gives each layer's own.
    """

    families: Sequence[Family]  # an nn.ModuleList (see __init__): torch types its items as plain Modules
    #: The decoder's output bias starts at the training data's mean (``reparam.model.init.output_bias``):
    #: with a bias of 0 the upper layer of the IWAE paper's two-layer MNIST model ended with 0 of 50
    #: active units (KL 0.2 nats) in reparam and in an independent implementation alike, and with
    #: the data's mean, as the authors' code starts it, 7-16 active (KL 8 nats) after 2-5 passes.
    auto_output_bias = "data"

    def __init__(self, encoder: nn.Module, families: list, decoder: nn.Module, head, up: list[nn.Module], down: list[nn.Module], prior: Prior | None = None):
        super().__init__()
        self.encoder, self.decoder, self.head = encoder, decoder, head
        self.families = cast(Sequence[Family], nn.ModuleList(families))
        self.up, self.down = nn.ModuleList(up), nn.ModuleList(down)
        self.flow = None
        self.prior_model = StandardPrior(families[-1], head.x_shape, 0) if prior is None else prior  # p(z_L)

    # --- the shape of the latent -----------------------------------------------------------

    @property
    def family(self):
        """The top layer's family: the latent the views drive (and the family whose rules apply)."""
        return self.families[-1]

    @property
    def layer_dims(self) -> list[int]:
        return [f.dim for f in self.families]

    @property
    def raw_size(self) -> int:
        return self.families[0].raw_size

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The concatenated latent (*S, B, sum D_l) -> one tensor per layer, bottom first."""
        return list(z.split(self.layer_dims, -1))

    # --- the distributions the bounds read ---------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's raw numbers of q(z_1|x) for x (B, *x_shape): (B, raw_size), float32."""
        return self.encoder(x).float()

    def posterior(self, x: torch.Tensor, stop: bool = False) -> ChainPosterior:
        """q(z_1..z_L | x); with ``stop`` the inference networks' weights are detached."""
        if stop:
            with torch.no_grad():
                raw1 = self.encode(x)
        else:
            raw1 = self.encode(x)
        return ChainPosterior(self, self.families[0].posterior(raw1), stop)

    def generative(self, layer: int, above: torch.Tensor) -> Distribution:
        """p(z_layer | z_(layer+1) = above), 0-based layer < L - 1."""
        return self.families[layer].posterior(self.down[layer](self.families[layer + 1].decoder_input(above)).float())

    def top_prior(self) -> Distribution:
        """p(z_L): event (D_L,)."""
        return self.prior_model.distribution(self.family, no_posterior)

    def prior(self) -> ChainPrior:
        return ChainPrior(self)

    def likelihood(self, z: torch.Tensor) -> Distribution:
        """p(x|z_1), z the concatenated latent."""
        z1 = z[..., : self.layer_dims[0]]
        return self.head(self.decoder(self.families[0].decoder_input(z1)).float())

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q || p) per example by Monte Carlo from z (K, B, sum D_l): no closed form across layers."""
        if z is None:
            raise ValueError("a hierarchical model's KL is a Monte Carlo estimate: pass samples z")
        return (q.log_prob(z) - self.prior().log_prob(z)).mean(0)

    # --- the views: the top layer --------------------------------------------------------------

    def descend(self, z_top: torch.Tensor) -> torch.Tensor:
        """z_1 reached from z_L (*batch, D_L) along the generative conditional means."""
        z = z_top
        for layer in range(len(self.families) - 2, -1, -1):
            z = self.families[layer].point(self.generative(layer, z))
        return z

    def decode_mean(self, z_top: torch.Tensor) -> torch.Tensor:
        """The mean image for a top-layer latent (*batch, D_L), the layers below at their conditional means."""
        z1 = self.descend(z_top)
        return self.head.mean(self.decoder(self.families[0].decoder_input(z1)).float())

    def point(self, q: ChainPosterior) -> torch.Tensor:
        """The top layer's point along the posterior's mean path, (B, D_L)."""
        return self.family.point(q.layers()[-1])

    def unit_mean(self, q: ChainPosterior) -> torch.Tensor:
        return self.family.unit_mean(q.layers()[-1])

    def sample_prior(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """n top-layer draws of p(z_L) at a temperature, (n, D_L)."""
        return self.prior_model.sample(n, temperature, self.family, no_posterior)

    def layer_statistics(self, q: Distribution, z: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per layer: unit means along the mean path [(B, D_l)], and the KL term
        E_q[log q(z_l|z_(l-1)) - log p(z_l|z_(l+1))] by Monte Carlo from z (K, B, sum D_l): (B, L)."""
        assert isinstance(q, ChainPosterior)  # this model's posterior
        means = [f.unit_mean(ql) for f, ql in zip(self.families, q.layers())]
        return means, -self.log_ratio_groups(q, z).mean(0)

    def log_ratio_groups(self, q: Distribution, z: torch.Tensor) -> torch.Tensor:
        """log p(z_l|z_(l+1)) - log q(z_l|z_(l-1)) per layer at z (K, B, sum D_l): (K, B, L), summing
        to log p(z) - log q(z|x). Free bits floor each layer's KL (``reparam.objectives.free_bits``)."""
        assert isinstance(q, ChainPosterior)  # this model's posterior
        parts = self.split(z)
        terms = []
        for layer in range(len(parts)):
            log_q = q.q1.log_prob(parts[0]) if layer == 0 else q.conditional(layer, parts[layer - 1]).log_prob(parts[layer])
            above = self.top_prior() if layer == len(parts) - 1 else self.generative(layer, parts[layer + 1])
            terms.append(above.log_prob(parts[layer]) - log_q)
        return torch.stack(terms, -1)

    def on_step(self, step: int) -> None:
        for f in self.families:
            f.on_step(step)

    def with_family(self, family) -> HierarchicalVAE | None:
        return self if family is self.family else None

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``encoder``, ``decoder``, and each layer's inference network apart: ``encoder.layer1``
        the encoder's, ``encoder.layer<l>`` the network from z_(l-1) to q(z_l)."""
        out = super().parameter_groups()
        for layer, net in enumerate([self.encoder, *self.up], start=1):
            out[f"encoder.layer{layer}"] = list(net.parameters())
        return out
