"""Gradient estimators: the same bound, different gradients (``objective.estimator``).

An estimator never changes the bound the trainer reports, only its gradient, and it is
written once, for every bound: a bound hands it a :class:`~reparam.objectives.draws.Signal`
(per-sample values v_k (K, B), their reduction over K and a per-example penalty), and the
estimator returns a *surrogate* s (B,) with s == bound in value and grad s == its gradient,
written as ``bound + (t - t.detach())`` or ``bound.detach() + (t - t.detach())``. The trainer
keeps minimizing ``-bound.mean()`` and never branches on the estimator.

Notation: K samples z_k ~ q(z|x) per example, log w_k = log p(x|z_k) + beta (log p(z_k)
- log q(z_k|x)) (beta = 1 after warm-up), w~_k = softmax_k(log w_k), L_K = log mean_k w_k.

| name | gradient | reductions | reference |
|---|---|---|---|
| ``pathwise`` | autograd through z = g(eps, phi) | any | Kingma & Welling 2014 |
| ``iwae`` | the same, for the IWAE bound: sum_k w~_k grad log w_k | log-mean-exp | Burda et al. 2016 |
| ``stl`` | pathwise, score term of log q dropped (log q's parameters detached) | any | Roeder et al. 2017 |
| ``dreg`` | encoder: sum_k w~_k^2 d log w_k/dz_k dz_k/dphi; decoder as iwae | log-mean-exp, K > 1 | Tucker et al. 2018 |
| ``score`` | sum_k A_k grad log q(z_k|x), z detached, plus the z-free terms | any | Williams 1992 |

``auto`` (the default) is ``pathwise`` where the family has ``rsample`` and ``score``
otherwise. The score estimator takes a baseline (``objective.baseline``, ``baselines.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..errors import ConfigError
from ..registry import Registry
from .baselines import BASELINES, check_baseline
from .reductions import LogMeanExp, Reduction

if TYPE_CHECKING:
    from .draws import Signal

ESTIMATORS: Registry = Registry("objective.estimator")
register = ESTIMATORS.register


def names() -> list[str]:
    return ["auto", *ESTIMATORS.names()]


class Estimator:
    """Base class: ``surrogate(signal)`` -> (B,), the bound's value with this estimator's gradient."""

    name = ""
    pathwise = True  # draws z with rsample
    needs_density_kl = False  # rewrites the KL as E_q[log q - log p] (see Family.kl_mismatch)
    needs_density_everywhere = False  # evaluates log q (parameters detached) at z: not a flow's own draw
    reductions: tuple[type[Reduction], ...] | None = None  # None: any
    min_k = 1

    def __init__(self, baseline: str = "none"):
        self.baseline = baseline

    @classmethod
    def applies_to(cls, reduction: Reduction | None) -> bool:
        """Whether it handles ``reduction`` (None: an objective of its own, which takes any)."""
        return cls.reductions is None or reduction is None or isinstance(reduction, cls.reductions)

    def surrogate(self, s: Signal) -> torch.Tensor:
        return s.value()


def swap_gradient(value: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """value's forward value with t's gradient: value.detach() + t - t.detach()."""
    return value.detach() + (t - t.detach())


@register("pathwise")
class Pathwise(Estimator):
    """The reparameterization trick: autograd of the bound through z = g(eps, phi)."""


@register("iwae")
class PlainIWAE(Estimator):
    """The IWAE gradient of Burda et al. (2016, eq. 8): sum_k w~_k grad log w_k, w~ detached."""

    reductions = (LogMeanExp,)


@register("stl")
class StickingTheLanding(Estimator):
    """Sticking the landing (Roeder, Wu & Duvenaud 2017).

    log q(z|x) enters with its parameters detached but z = g(eps, phi) attached: the
    dropped term, -grad_phi log q_phi(z) at fixed z, has expectation 0, so for the ELBO
    (any K, a mean of log w_k) the estimate stays unbiased and its variance vanishes when q
    is the exact posterior. A closed-form KL is rewritten as E_q[log q - log p] first. For
    log-mean-exp with K > 1 the dropped term sum_k w~_k grad log q(z_k) does *not* have
    mean 0: STL is biased there (Tucker et al. 2018, section 5), which DReG corrects. Under
    free bits only the KL groups above the floor enter (``Draw.log_ratio``), as in the
    bound; a family whose KL is not KL(q || p) of its own densities is refused, and so is a
    posterior whose density is known at its own draws only (a flow).
    """

    needs_density_kl = True
    needs_density_everywhere = True

    def surrogate(self, s: Signal) -> torch.Tensor:
        return swap_gradient(s.value(), s.reduction.value(s.stopped()) - s.floor())


@register("dreg")
class DReG(StickingTheLanding):
    """Doubly reparameterized gradient for the IWAE bound (Tucker, Lawson, Gu & Maddison 2018).

    Encoder: sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d phi), unbiased for grad_phi L_K;
    decoder: sum_k w~_k grad_theta log w_k, the plain IWAE gradient. Implemented as
    t = sum_k w~_k log w_k(stopped q), whose gradient reaching z_k is w~_k d log w_k/dz_k,
    with a hook that multiplies it by (1 - beta) + beta w~_k: the total coefficient is
    c_k = (1 - beta) w~_k + beta w~_k^2, which is w~_k^2 at beta = 1 and generalizes the
    identity E[w~_k d_phi log q(z_k)] = E[d w~_k / d z_k  d z_k / d phi] to the tempered
    weights of KL warm-up.
    """

    reductions = (LogMeanExp,)
    min_k = 2

    def surrogate(self, s: Signal) -> torch.Tensor:
        lw = s.stopped()  # (K, B)
        w = torch.softmax(lw.detach(), 0)
        z = s.draw.z
        if z.requires_grad:
            scale = ((1 - s.beta) + s.beta * w).unsqueeze(-1)  # (K, B, 1); times t's own w_k: c_k
            z.register_hook(lambda g: g * scale)
        return swap_gradient(s.value(), (w * lw).sum(0))


@register("score")
class ScoreFunction(Estimator):
    """Score function / REINFORCE / likelihood ratio (Williams 1992; Mnih & Gregor 2014).

    z is drawn without a path to phi. The surrogate is bound + sum_k A_k log q(z_k|x)
    (its value removed again), A_k detached: the bound at fixed z still gives the decoder
    gradient and the z-free terms (a closed-form KL); the second term gives
    E_q[A_k grad log q], with A_k = the learning signal minus a baseline (``baselines.py``):
    the reduction's share of the per-sample values v_k (v_k / K for the ELBO's mean, the
    bound itself for log-mean-exp and Renyi), v_k = log p(x|z_k) plus beta (log p(z_k) -
    log q(z_k|x)) wherever the bound samples its KL (a Monte Carlo KL, a weighted bound).
    """

    pathwise = False

    def surrogate(self, s: Signal) -> torch.Tensor:
        advantage, extra = BASELINES[self.baseline](s.draw, s.v.detach(), s.reduction)  # (K, B), (B,)
        t = (advantage.detach() * s.draw.log_q()).sum(0) + extra
        value = s.value()
        return value + (t - t.detach())


def supported(
    has_rsample: bool, reduction: Reduction | None, k: int, kl_mismatch: str | None = None, density_everywhere: bool = True
) -> list[str]:
    """Estimators usable with a family (with or without rsample, its ``kl_mismatch``), a posterior
    (with a density everywhere or at its own draws only), a reduction and K."""
    ok = []
    for name in ESTIMATORS.names():
        cls = ESTIMATORS[name]
        fits = (has_rsample or not cls.pathwise) and not (cls.needs_density_kl and kl_mismatch)
        fits = fits and (density_everywhere or not cls.needs_density_everywhere)
        if fits and cls.applies_to(reduction) and k >= cls.min_k:
            ok.append(name)
    return ok


def check(
    estimator: str, baseline: str, objective: str, k: int, has_rsample: bool, family: str = "this family",
    kl_mismatch: str | None = None, reduction: Reduction | None = None, bounds_for: Callable[[type], list[str]] | None = None,
    density_everywhere: bool = True,
) -> str:
    """Resolve ``auto`` and validate the combination; returns the estimator's name.

    ``reduction`` is the bound's (``objective`` names it in messages); ``bounds_for`` lists
    the bounds whose reduction an estimator accepts. Raises ConfigError (one line) for an
    unknown name, a pathwise estimator on a family without rsample, an estimator that
    rewrites the KL as E_q[log q - log p] on a family whose KL is another
    (``Family.kl_mismatch``), an estimator or baseline that needs K > 1 at K = 1, or a bound
    whose reduction the estimator does not handle.
    """
    if estimator == "auto":
        estimator = "pathwise" if has_rsample else "score"
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown objective.estimator {estimator!r}; valid: {', '.join(names())}")
    cls = ESTIMATORS[estimator]
    if cls.pathwise and not has_rsample:
        ok = ", ".join(supported(False, reduction, k)) or "none at this K"
        raise ConfigError(
            f"objective.estimator={estimator} needs a latent family with rsample (a reparameterized "
            f"sample); {family} has none and supports: {ok}"
        )
    if cls.needs_density_kl and kl_mismatch:
        ok = ", ".join(supported(has_rsample, reduction, k, kl_mismatch))
        raise ConfigError(f"objective.estimator={estimator} rewrites the KL as E_q[log q(z|x) - log p(z)], but {kl_mismatch}; use one of: {ok}")
    if cls.needs_density_everywhere and not density_everywhere:
        raise ConfigError(
            f"objective.estimator={estimator} evaluates log q(z|x) with its parameters detached, which a flow posterior "
            "(latent.flow) knows at its own draws only; use objective.estimator=pathwise (or iwae)"
        )
    if reduction is not None and not cls.applies_to(reduction):
        names_ok = " or ".join(bounds_for(cls)) if bounds_for else "another bound"
        raise ConfigError(f"objective.estimator={estimator} applies to objective.name={names_ok}, not {objective}")
    if k < cls.min_k:
        raise ConfigError(f"objective.estimator={estimator} needs K > 1 samples (objective.k > 1), got k={k}")
    check_baseline(baseline, estimator, k)
    return estimator


def has_rsample(family) -> bool:
    """Whether the family's posterior has a reparameterized sample (``Family.has_rsample``)."""
    return family.has_rsample
