"""Conditional VAEs (Sohn et al. 2015) and the semi-supervised M2 model (Kingma et al. 2014).

q(z|x, y), p(x|z, y), and p(z) (or a learned p(z|y)), y one of C classes. The label enters
the encoder as a term of its raw outputs (its last layer sees [h(x), onehot(y)]) and the
decoder as extra inputs beside the latent, so every architecture, family and head works
unchanged. ``given(y)`` is the model with the labels of a minibatch fixed: a view with the
plain VAE's contract (``reparam.model.contract.Model``), which every bound, estimator and
the importance-sampled log-likelihood take as it is. With a classifier q(y|x) (M2), a label can also be a latent
variable: see ``reparam.objectives.labels``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, OneHotCategorical, kl_divergence

from ..flows import FlowPosterior
from ..latents import Family
from .vae import VAE, prior_kl


def full(t: torch.Tensor) -> torch.Tensor:
    """A network's output in at least float32 (autocast's half precision raised; float64 kept)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


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

    @property
    def semi_supervised(self) -> bool:
        """Whether the labels can be latent: M2, with its classifier q(y|x)."""
        return self.classifier is not None

    @property
    def auto_init(self) -> str:
        """torch's start: with He's, M2's classifier on digits (100 labels, 5 epochs) ended at 73% test error against 28%."""
        return "torch"

    def onehot(self, y: torch.Tensor) -> torch.Tensor:
        """Class indices (*B,) -> one-hots (*B, C) float; (relaxed) one-hots pass through."""
        if y.is_floating_point():
            return y
        return F.one_hot(y, self.classes).to(self.label_in.weight.dtype)

    def raw_given(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """q's raw numbers for x (B, *x_shape) and labels y: (*S, B, raw_size)."""
        return full(self.encoder(x)) + self.label_in(self.onehot(y))

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
        return self.head(full(self.decoder(self.decoder_inputs(z, y))))

    def decode_mean_given(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head.mean(full(self.decoder(self.decoder_inputs(z, y))))

    def label_posterior(self, x: torch.Tensor) -> OneHotCategorical:
        """q(y|x), the classifier, as one-hots: batch (B,), event (C,)."""
        if self.classifier is None:
            raise TypeError("q(y|x) needs the classifier of a semi-supervised model (data.labeled)")
        return OneHotCategorical(logits=full(self.classifier(x)), validate_args=False)

    def given(self, y: torch.Tensor) -> LabelledView:
        """The model with the labels y (B,) (or relaxed one-hots) of a minibatch fixed."""
        return LabelledView(self, y)

    def sample_prior_given(self, n: int, temperature: float, y: torch.Tensor) -> torch.Tensor:
        """n draws of p(z|y), (n, D): y one class index (0-dim) or n of them."""
        yy = self.onehot(y.expand(n)) if self.prior_model.conditional else None
        return self.prior_model.sample(n, temperature, self.family, self.base_posterior, yy)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError("a conditional VAE's encoder reads the labels: use model.given(y).encode(x)")

    def posterior(self, x: torch.Tensor, stop: bool = False) -> Distribution:
        raise TypeError("a conditional VAE's q(z|x, y) needs the labels: use model.given(y).posterior(x)")

    def likelihood(self, z: torch.Tensor) -> Distribution:
        raise TypeError("a conditional VAE's p(x|z, y) needs the labels: use model.given(y).likelihood(z)")

    def with_family(self, family) -> ConditionalVAE | None:
        """The same networks with another latent family of the same raw layout (see ``VAE.with_family``)."""
        if family is self.family:
            return self
        if not self._standard():
            return None
        other = ConditionalVAE(self.encoder, family, self.decoder, self.head, self.classes, self.classifier)
        other.label_in = self.label_in
        return other.train(self.training)


def forwarded(name: str) -> Any:
    """A read-only member of a labelled view that is its model's own."""
    return property(lambda view: getattr(view.model, name), doc=f"The model's ``{name}``.")


class LabelledView:
    """A conditional VAE with the labels y fixed: posterior(x) = q(z|x, y), likelihood(z) = p(x|z, y),
    prior() = p(z|y), and the model's other members (``reparam.model.contract.Model``).

    Its labels are given, not latent: evaluation scores it as a model of x given y
    (``semi_supervised`` is False).
    """

    semi_supervised = False

    def __init__(self, model: ConditionalVAE, y: torch.Tensor):
        self.model, self.y = model, y

    # the model's shape and labels, read from it
    x_shape = forwarded("x_shape")
    latent_dim = forwarded("latent_dim")
    layer_dims = forwarded("layer_dims")
    raw_size = forwarded("raw_size")
    family = forwarded("family")
    density_everywhere = forwarded("density_everywhere")
    auto_init = forwarded("auto_init")
    auto_output_bias = forwarded("auto_output_bias")
    classes = forwarded("classes")
    class_names = forwarded("class_names")

    @property
    def per_example_prior(self) -> bool:
        """Whether its labels are one per example (then p(z|y) differs between rows)."""
        return self.y.dim() > 0

    # --- the labels ----------------------------------------------------------------------------

    def given(self, y: torch.Tensor) -> LabelledView:
        """The same model with other labels fixed."""
        return LabelledView(self.model, y)

    def rows(self, index) -> LabelledView:
        """The view for the examples ``index`` of its batch (itself when one label serves all)."""
        return self if self.y.dim() == 0 else LabelledView(self.model, self.y[index])

    def label_posterior(self, x: torch.Tensor) -> OneHotCategorical:
        raise TypeError("a labelled view's labels are given: q(y|x) is the classifier of the model itself")

    # --- the distributions, given y ------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.raw_given(x, self.y)

    def posterior(self, x: torch.Tensor, stop: bool = False) -> Distribution:
        return self.model.posterior_given(x, self.y, stop)

    def prior(self) -> Distribution:
        return self.model.prior_given(self.y)

    def likelihood(self, z: torch.Tensor) -> Distribution:
        return self.model.likelihood_given(z, self.y)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode_mean_given(z, self.y)

    def sample_prior(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """n draws of p(z|y), (n, D) (y one label, or n of them)."""
        return self.model.sample_prior_given(n, temperature, self.y)

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z|x,y) || p(z|y)): the family's own with p(z), else closed form where registered, else Monte Carlo."""
        if self.model._standard():
            return self.model.family.kl(q, z)
        return prior_kl(q, self.prior(), z)

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

    # --- the rest, the model's own -------------------------------------------------------------

    def log_ratio_groups(self, q: Distribution, z: torch.Tensor) -> torch.Tensor | None:
        return self.model.log_ratio_groups(q, z)

    def layer_statistics(self, q: Distribution, z: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [self.unit_mean(q)], self.kl(q, z).unsqueeze(-1)

    def log_prob_per_dim(self, d: Distribution, z: torch.Tensor) -> torch.Tensor | None:
        return self.model.log_prob_per_dim(d, z)

    def point(self, q: Distribution) -> torch.Tensor:
        return self.model.point(q)

    def unit_mean(self, q: Distribution) -> torch.Tensor:
        return self.model.unit_mean(q)

    def on_step(self, step: int) -> None:
        self.model.on_step(step)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.model.parameter_groups()

    def with_family(self, family: Family) -> LabelledView | None:
        other = self.model.with_family(family)
        return None if other is None else LabelledView(other, self.y)
