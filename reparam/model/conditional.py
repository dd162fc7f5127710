"""Conditional VAEs (Sohn et al. 2015) and the semi-supervised M2 model (Kingma et al. 2014).

q(z|x, y), p(x|z, y), and p(z) (or a learned p(z|y)), y one of C classes. The label enters
the encoder as a term of its raw outputs (its last layer sees [h(x), onehot(y)]) and the
decoder as extra inputs beside the latent, so every architecture, family and head works
unchanged. ``given(y)`` is the model with the labels of a minibatch fixed: a view with the
plain VAE's contract, which every bound, estimator and the importance-sampled
log-likelihood take as it is. With a classifier q(y|x) (M2), a label can also be a latent
variable: see ``reparam.objectives.labels``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, OneHotCategorical, kl_divergence

from ..flows import FlowPosterior
from .vae import VAE


class ConditionalVAE(VAE):
    """A VAE conditioned on a label y in 0..C-1 (``classes`` = C), optionally with a classifier q(y|x).

    ``label_in`` (C -> encoder raw size, no bias) adds the label's term to q's raw outputs;
    the decoder reads [decoder_input(z), y] (y one-hot, or any point of the simplex: a
    relaxed label). ``classifier`` (x -> C logits, or None) is q(y|x) for semi-supervised
    training. ``y`` arguments are class indices (B,) or (relaxed) one-hots (*S, B, C).
    """

    def __init__(self, encoder, family, decoder, head, classes: int, classifier: nn.Module | None = None, prior=None, flow=None):
        super().__init__(encoder, family, decoder, head, prior, flow)
        self.classes = classes
        self.label_in = nn.Linear(classes, self.raw_size, bias=False)
        self.classifier = classifier

    def onehot(self, y: torch.Tensor) -> torch.Tensor:
        """Class indices (*B,) -> one-hots (*B, C) float; (relaxed) one-hots pass through."""
        if y.is_floating_point():
            return y
        return F.one_hot(y, self.classes).float()

    def raw_given(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """q's raw numbers for x (B, *x_shape) and labels y: (*S, B, raw_size)."""
        return self.encoder(x).float() + self.label_in(self.onehot(y))

    def posterior_given(self, x: torch.Tensor, y: torch.Tensor, stop: bool = False) -> Distribution:
        """q(z|x, y)."""
        if stop:
            with torch.no_grad():
                return self.posterior_given(x, y)
        raw = self.raw_given(x, y)
        q0 = self.family.posterior(raw[..., : self.family.raw_size])
        return q0 if self.flow is None else FlowPosterior(q0, self.flow, raw[..., self.family.raw_size :])

    def prior_given(self, y: torch.Tensor) -> Distribution:
        """p(z|y): the learned prior of the labels (``prior.name=label``), or p(z)."""
        return self.prior_model.distribution(self.family, self.base_posterior, self.onehot(y))

    def decoder_inputs(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[decoder_input(z), y] with y broadcast over z's sample dimensions: (*S, B, D + C)."""
        zin = self.family.decoder_input(z)
        yin = self.onehot(y)
        return torch.cat([zin, yin.expand(*zin.shape[:-1], yin.shape[-1])], -1)

    def likelihood_given(self, z: torch.Tensor, y: torch.Tensor) -> Distribution:
        """p(x|z, y)."""
        return self.head(self.decoder(self.decoder_inputs(z, y)).float())

    def decode_mean_given(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head.mean(self.decoder(self.decoder_inputs(z, y)).float())

    def label_posterior(self, x: torch.Tensor) -> OneHotCategorical:
        """q(y|x), the classifier, as one-hots: batch (B,), event (C,)."""
        return OneHotCategorical(logits=self.classifier(x).float(), validate_args=False)

    def given(self, y: torch.Tensor) -> LabelledView:
        """The model with the labels y (B,) (or relaxed one-hots) of a minibatch fixed."""
        return LabelledView(self, y)

    def sample_prior_given(self, n: int, temperature: float, y: torch.Tensor) -> torch.Tensor:
        """n draws of p(z|y) for one label y (a 0-dim class index), (n, D)."""
        if not self.prior_model.learned:
            return self.family.sample_prior(n, temperature)
        return self.prior_model.sample(n, temperature, self.family, self.base_posterior, self.onehot(y.expand(n)))


class LabelledView:
    """A conditional VAE with the labels y fixed: posterior(x) = q(z|x, y), likelihood(z) = p(x|z, y),
    prior() = p(z|y), and the VAE's other hooks; what it does not override it reads from the model."""

    def __init__(self, model: ConditionalVAE, y: torch.Tensor):
        self.model, self.y = model, y

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def posterior(self, x: torch.Tensor, stop: bool = False) -> Distribution:
        return self.model.posterior_given(x, self.y, stop)

    def prior(self) -> Distribution:
        return self.model.prior_given(self.y)

    def likelihood(self, z: torch.Tensor) -> Distribution:
        return self.model.likelihood_given(z, self.y)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode_mean_given(z, self.y)

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z|x,y) || p(z|y)): the family's own with p(z), else closed form where registered, else Monte Carlo."""
        if self.model._standard():
            return self.model.family.kl(q, z)
        p = self.prior()
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            if z is None:
                raise ValueError("no closed-form KL to this prior: pass samples z") from None
            return (q.log_prob(z) - p.log_prob(z)).mean(0)

    def kl_per_dim(self, q: Distribution) -> torch.Tensor | None:
        if self.model._standard():
            return self.model.family.kl_per_dim(q)
        p = self.prior()
        if isinstance(q, Independent) and isinstance(p, Independent):
            try:
                return kl_divergence(q.base_dist, p.base_dist)
            except NotImplementedError:
                return None
        return None

    def with_family(self, family):
        return self if family is self.model.family else None
