"""Labels in the objective: conditional bounds and the semi-supervised M2 model (Kingma et al. 2014).

A conditional VAE's minibatch carries its labels (:class:`Labelled`): the configured bound
of the model with those labels fixed, ``model.given(y)``. M2 (:class:`SemiSupervised`) adds
unlabelled images, whose label is a latent variable with posterior q(y|x), the classifier,
and prior p(y) uniform over the C classes. Per image (Kingma et al. 2014, eqs. 6-9):

    labelled    L(x, y) = bound(x | y) + log p(y)
    unlabelled  U(x)    = sum_y q(y|x) L(x, y) + H(q(y|x)) = E_q(y|x)[bound(x | y)] - KL(q(y|x) || p(y))

and the objective per training image is J = (N_u / N) mean_u U + (N_l / N) mean_l L +
alpha mean_l log q(y|x): their code's sum over the data divided by N, where each labelled
image's log q(y|x) weighs alpha N / N_l (``objective.label_weight`` = alpha, 0.1 there).

The expectation over y in U is estimated three ways (``objective.labels``):

- ``exact``: the sum over all C classes, each scored by the bound (C decoder passes);
- ``relaxed``: one Gumbel-softmax draw y~ ~ Concrete(q(y|x), tau) (Jang et al. 2017; Maddison
  et al. 2017), passed straight through: the encoder, the decoder and p(z|y) see its one-hot
  argmax y, an exact draw of q(y|x) (the Gumbel-max trick), and the gradient to the classifier
  flows through y~ (Jang et al. 2017, section 2.2). The value is one draw of U, as for ``score``;
  the gradient is biased but has low variance, and its bias grows with the temperature: on
  MNIST with 100 labels (``benchmarks/labels.py``'s M2, seed 0) the test error over three epochs
  went 51.1 -> 47.7 -> 45.2% at tau = 0.1 (the default), 45.7 -> 50.8 -> 51.4% at 0.5 and
  46.1 -> 53.1 -> 53.6% at 1.0. Feeding y~ itself to the networks (before 0.3) let its
  continuous part carry information about the image into the decoder that the discrete KL
  (at most log C nats) never charged (51% -> 70% over 19 epochs at 0.5);
- ``score``: one discrete label y ~ q(y|x) and the score function for q(y|x), with a
  baseline (``objective.label_baseline``): ``loo`` (the default) draws two labels per image
  and uses each one's bound as the other's baseline (Kool et al. 2019), which cancels the
  spread of the bound between images that a moving average (one number) or NVIL's learned
  b(x) leave in the signal; unbiased for U.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import OneHotCategorical, RelaxedOneHotCategorical

from ..errors import ConfigError, one_of, require
from .baselines import MovingAverage, baseline_module

ESTIMATES = ("exact", "relaxed", "score")
LABEL_BASELINES = ("none", "moving_average", "nvil", "loo")


@dataclass
class Labelled:
    """A minibatch with its labels: x (B, *x_shape), y (B,) class indices."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass
class SemiSupervised:
    """M2's minibatch: unlabelled x (B_u, *x_shape), labelled x_l (B_l, *x_shape) with y_l (B_l,),
    and the data's shares N_u / N and N_l / N that weigh the two parts."""

    x: torch.Tensor
    x_l: torch.Tensor
    y_l: torch.Tensor
    unlabelled_share: float
    labelled_share: float


def check(cfg) -> None:
    """The label keys against the rest of the config (ConfigError, one line)."""
    one_of("model.condition", cfg.model.condition, ("none", "label"))
    o = cfg.objective
    one_of("objective.labels", o.labels, ESTIMATES)
    one_of("objective.label_baseline", o.label_baseline, LABEL_BASELINES)
    require(math.isfinite(o.label_weight) and o.label_weight >= 0, f"objective.label_weight must be a number >= 0, got {o.label_weight}")
    require(math.isfinite(o.label_temperature) and o.label_temperature > 0, f"objective.label_temperature must be > 0, got {o.label_temperature}")
    require(cfg.data.labeled >= 0, f"data.labeled must be >= 0 images, got {cfg.data.labeled}")
    conditional = cfg.model.condition == "label"
    if cfg.data.labeled and not conditional:
        raise ConfigError("data.labeled trains the semi-supervised M2 model, which is conditional: add model.condition=label")
    if cfg.prior.name == "label" and not conditional:
        raise ConfigError("prior.name=label is p(z|y), a prior of the labels: add model.condition=label")
    if conditional:
        require(cfg.train.gradvar_every == 0, "train.gradvar_every: the gradient lab measures unconditional models; drop it or model.condition")
        require(cfg.data.name != "table", "model.condition=label needs labelled images; a table has no labels (drop model.condition)")
    defaults = {"labels": "exact", "label_weight": 0.1, "label_temperature": 0.1, "label_baseline": "loo"}
    if not cfg.data.labeled:
        changed = [k for k, v in defaults.items() if getattr(o, k) != v]
        require(not changed, f"objective.{changed[0] if changed else ''} applies to semi-supervised training; set data.labeled (labelled images, e.g. 100)")
        require(cfg.train.labeled_batch_size == 0, "train.labeled_batch_size applies to semi-supervised training; set data.labeled (labelled images, e.g. 100)")
    else:
        require(o.labels == "relaxed" or o.label_temperature == defaults["label_temperature"], "objective.label_temperature applies to objective.labels=relaxed")
        require(o.labels == "score" or o.label_baseline == defaults["label_baseline"], "objective.label_baseline applies to objective.labels=score")


def label_baseline_module(cfg, x_shape: tuple[int, ...]):
    """The state the score estimator's label baseline keeps (a module), or None."""
    if cfg.labels != "score" or cfg.label_baseline in ("none", "loo"):
        return None
    return baseline_module(cfg.label_baseline, x_shape)


def kl_to_uniform(q: OneHotCategorical) -> torch.Tensor:
    """KL(q(y|x) || uniform over C classes) = sum_y q log q + log C, (B,)."""
    p = q.probs
    return (p * torch.log_softmax(q.logits, -1)).sum(-1) + math.log(p.shape[-1])


def with_label_kl(terms: dict, kl_y: torch.Tensor) -> dict:
    """The bound's terms with the label's KL(q(y|x) || p(y)) added to the KL and taken from the ELBO."""
    return dict(terms, kl=terms["kl"] + kl_y, elbo=terms["elbo"] - kl_y, label_kl=kl_y)


def conditional(fn, model, batch: Labelled, **kwargs):
    """The bound of the model with the batch's labels fixed: (surrogate (B,), terms)."""
    return fn(model.given(batch.y), batch.x, **kwargs)


def exact(fn, model, x: torch.Tensor, **kwargs):
    """U(x) summed over the C classes: one bound on C x B rows. (surrogate (B,), terms)."""
    c, b = model.classes, len(x)
    xs = x.repeat(c, *([1] * (x.dim() - 1)))  # (C B, *x_shape): class-major
    ys = torch.arange(c, device=x.device).repeat_interleave(b)  # (C B,)
    bound, terms = fn(model.given(ys), xs, **kwargs)
    q = model.label_posterior(x)
    kl_y = kl_to_uniform(q)

    def expect(t: torch.Tensor) -> torch.Tensor:  # sum_y q(y|x) t(x, y), (B,)
        return (q.probs * t.view(c, b).T).sum(-1)

    out = {key: expect(value) for key, value in terms.items()}
    return expect(bound) - kl_y, with_label_kl(out, kl_y)


def straight_through(soft: torch.Tensor) -> torch.Tensor:
    """The one-hot argmax of ``soft`` (*B, C) in value, ``soft``'s gradient in the backward pass."""
    hard = torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())


def relaxed(fn, model, x: torch.Tensor, temperature: float, **kwargs):
    """The straight-through Gumbel-softmax estimate: a one-hot label, the relaxed draw's gradient. (surrogate (B,), terms)."""
    q = model.label_posterior(x)
    soft = RelaxedOneHotCategorical(torch.tensor(temperature, device=x.device), logits=q.logits, validate_args=False).rsample()  # (B, C)
    bound, terms = fn(model.given(straight_through(soft)), x, **kwargs)
    kl_y = kl_to_uniform(q)
    terms = with_label_kl(terms, kl_y)
    return bound - kl_y, terms


def score(fn, model, x: torch.Tensor, label_baseline, **kwargs):
    """The score-function estimate: y ~ q(y|x), gradient A log q(y|x). (surrogate (B,), terms)."""
    q = model.label_posterior(x)
    y = q.sample()  # (B, C) one-hot, no path to the classifier
    bound, terms = fn(model.given(y.argmax(-1)), x, **kwargs)
    kl_y = kl_to_uniform(q)
    signal = bound.detach()  # the learning signal: the bound at this label (its log p(y) is a constant)
    extra: torch.Tensor | float = 0.0
    if isinstance(label_baseline, MovingAverage):
        advantage = signal - label_baseline.value
        label_baseline.update(signal)
    elif label_baseline is not None:  # NVIL: a learned b(x), trained on (signal - b(x))^2
        b = label_baseline(x)
        advantage, extra = signal - b.detach(), -((signal - b) ** 2)
    else:
        advantage = signal
    t = advantage * q.log_prob(y) + extra
    terms = with_label_kl(terms, kl_y)
    return bound - kl_y + (t - t.detach()), terms


def score_loo(fn, model, x: torch.Tensor, **kwargs):
    """The score-function estimate from two labels y1, y2 ~ q(y|x) per image, each bound the
    other's baseline: grad = 1/2 sum_s (f_s - f_(other)) grad log q(y_s|x), unbiased for U, with
    the image's own level cancelled. (surrogate (B,), terms), the terms averaged over the two."""
    q = model.label_posterior(x)
    y = q.sample((2,))  # (2, B, C) one-hot, no path to the classifier
    b = len(x)
    bound, terms = fn(model.given(y.argmax(-1).flatten()), x.repeat(2, *([1] * (x.dim() - 1))), **kwargs)
    f = bound.view(2, b)  # (2, B)
    advantage = (f - f.flip(0)).detach() / 2
    t = (advantage * q.log_prob(y)).sum(0)  # (B,)
    kl_y = kl_to_uniform(q)
    terms = {key: value.view(2, b).mean(0) for key, value in terms.items()}
    terms = with_label_kl(terms, kl_y)
    return f.mean(0) - kl_y + (t - t.detach()), terms


def unlabelled(fn, model, x: torch.Tensor, cfg, label_baseline, **kwargs):
    """U(x) by the configured estimate (``cfg`` the objective section)."""
    if cfg.labels == "exact":
        return exact(fn, model, x, **kwargs)
    if cfg.labels == "relaxed":
        return relaxed(fn, model, x, cfg.label_temperature, **kwargs)
    if cfg.label_baseline == "loo":
        return score_loo(fn, model, x, **kwargs)
    return score(fn, model, x, label_baseline, **kwargs)


def labelled(fn, model, x: torch.Tensor, y: torch.Tensor, **kwargs):
    """L(x, y) = bound(x | y) + log p(y), and log q(y|x): (surrogate (B,), log q (B,), terms)."""
    bound, terms = fn(model.given(y), x, **kwargs)
    q = model.label_posterior(x)
    log_q = q.log_prob(torch.nn.functional.one_hot(y, model.classes).to(q.logits.dtype))
    return bound - math.log(model.classes), log_q, terms


def semi_supervised(fn, model, batch: SemiSupervised, cfg, label_baseline, **kwargs):
    """M2 on one minibatch: per-row contributions (B_u + B_l,) whose mean is J, and the terms.

    Row i of the unlabelled part holds (N_u / N) U(x_i) R / B_u and row j of the labelled
    part ((N_l / N) L(x_j, y_j) + alpha log q(y_j|x_j)) R / B_l, R = B_u + B_l rows, so the
    trainer's mean over rows (its one reduction) is J, however the two parts are sized.
    """
    u, terms = unlabelled(fn, model, batch.x, cfg, label_baseline, **kwargs)
    bound_l, log_q, _ = labelled(fn, model, batch.x_l, batch.y_l, **kwargs)
    rows = len(batch.x) + len(batch.x_l)
    part_u = batch.unlabelled_share * u * (rows / len(batch.x))
    part_l = (batch.labelled_share * bound_l + cfg.label_weight * log_q) * (rows / len(batch.x_l))
    terms = dict(terms, labelled_elbo=bound_l.detach(), label_log_q=log_q.detach())
    return torch.cat([part_u, part_l]), terms
