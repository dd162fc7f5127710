"""Gradient estimators: the same bound, different gradients (``objective.estimator``).

An estimator never changes the bound the trainer reports, only its gradient. Each one
returns a *surrogate* s (B,) with s == bound in value and grad s == the estimator's
gradient, written as ``bound + (t - t.detach())`` or ``bound.detach() + (t - t.detach())``,
so the trainer keeps minimizing ``-bound.mean()`` and never branches on the estimator.

Notation: K samples z_k ~ q(z|x) per example, log w_k = log p(x|z_k) + beta (log p(z_k)
- log q(z_k|x)) (beta = 1 after warm-up), w~_k = softmax_k(log w_k), L_K = log mean_k w_k.

| name | gradient | bounds | reference |
|---|---|---|---|
| ``pathwise`` | autograd through z = g(eps, phi) | elbo, iwae | Kingma & Welling 2014 |
| ``iwae`` | the same, for the IWAE bound: sum_k w~_k grad log w_k | iwae | Burda et al. 2016 |
| ``stl`` | pathwise, score term of log q dropped (log q's parameters detached) | elbo, iwae | Roeder et al. 2017 |
| ``dreg`` | encoder: sum_k w~_k^2 d log w_k/dz_k dz_k/dphi; decoder as iwae | iwae, K > 1 | Tucker et al. 2018 |
| ``score`` | sum_k A_k grad log q(z_k|x), z detached, plus the z-free terms | elbo, iwae | Williams 1992 |

``auto`` (the default) is ``pathwise`` where the family has ``rsample`` and ``score``
otherwise. The score estimator takes a baseline (``objective.baseline``) from
:mod:`reparam.baselines`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.distributions import Distribution

from .baselines import BASELINES, Shape, check_baseline
from .errors import ConfigError

ESTIMATORS: dict[str, type["Estimator"]] = {}


def register(name: str) -> Callable[[type["Estimator"]], type["Estimator"]]:
    def deco(cls: type["Estimator"]) -> type["Estimator"]:
        cls.name = name
        ESTIMATORS[name] = cls
        return cls

    return deco


def names() -> list[str]:
    return ["auto", *sorted(ESTIMATORS)]


def supported(has_rsample: bool, objective: str, k: int, kl_mismatch: str | None = None) -> list[str]:
    """Estimators usable with a family (with or without rsample, its ``kl_mismatch``), a bound and K."""
    ok = []
    for name, cls in sorted(ESTIMATORS.items()):
        fits = (has_rsample or not cls.pathwise) and not (cls.needs_density_kl and kl_mismatch)
        if fits and cls.applies_to(objective) and k >= cls.min_k:
            ok.append(name)
    return ok


def check(
    estimator: str, baseline: str, objective: str, k: int, has_rsample: bool, family: str = "this family",
    kl_mismatch: str | None = None,
) -> str:
    """Resolve ``auto`` and validate the combination; returns the estimator's name.

    Raises ConfigError (one line) for an unknown name, a pathwise estimator on a family
    without rsample, an estimator that rewrites the KL as E_q[log q - log p] on a family
    whose KL is another (``Family.kl_mismatch``), an estimator or baseline that needs
    K > 1 at K = 1, or a bound the estimator does not apply to.
    """
    if estimator == "auto":
        estimator = "pathwise" if has_rsample else "score"
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown objective.estimator {estimator!r}; valid: {', '.join(names())}")
    cls = ESTIMATORS[estimator]
    if cls.pathwise and not has_rsample:
        ok = ", ".join(supported(False, objective, k)) or "none at this K"
        raise ConfigError(
            f"objective.estimator={estimator} needs a latent family with rsample (a reparameterized "
            f"sample); {family} has none and supports: {ok}"
        )
    if cls.needs_density_kl and kl_mismatch:
        ok = ", ".join(supported(has_rsample, objective, k, kl_mismatch))
        raise ConfigError(f"objective.estimator={estimator} rewrites the KL as E_q[log q(z|x) - log p(z)], but {kl_mismatch}; use one of: {ok}")
    if not cls.applies_to(objective):
        raise ConfigError(f"objective.estimator={estimator} applies to objective.name={' or '.join(cls.bounds)}, not {objective}")
    if k < cls.min_k:
        raise ConfigError(f"objective.estimator={estimator} needs K > 1 samples (objective.k > 1), got k={k}")
    check_baseline(baseline, estimator, k)
    return estimator


def has_rsample(family) -> bool:
    """Whether the family's posterior has a reparameterized sample (read from q itself)."""
    raw = torch.zeros(family.raw_size, dtype=family._anchor.dtype, device=family._anchor.device)
    return bool(family.posterior(raw).has_rsample)


@dataclass
class Draw:
    """K posterior samples for a minibatch and the densities the bounds need.

    q: batch (B,), event (D,); z (K, B, D);
    log_px_z (K, B). z is reparameterized (``rsample``) for pathwise estimators and a
    plain, detached draw for the score function. ``free_bits`` is the bound's
    ``objectives.FreeBits`` when it floors the KL (estimators keep the same mask).
    """

    model: Any
    x: torch.Tensor
    q: Distribution
    z: torch.Tensor
    log_px_z: torch.Tensor
    estimator: "Estimator"
    free_bits: Any = None

    def log_pz(self) -> torch.Tensor:
        """log p(z_k), (K, B)."""
        return self.model.prior().log_prob(self.z)

    def log_q(self, stop: bool = False) -> torch.Tensor:
        """log q(z_k|x), (K, B); with ``stop`` the parameters of q are detached (z is not)."""
        return (self._q_stop() if stop else self.q).log_prob(self.z)

    def log_ratio(self, stop: bool = False) -> torch.Tensor:
        """log p(z_k) - log q(z_k|x), (K, B), the part of it the bound keeps under free bits."""
        total = self.log_pz() - self.log_q(stop)
        if self.free_bits is None:
            return total
        family = self.model.family
        q = self.q if not stop else self._q_stop()
        per_dim = None
        if self.free_bits.group is not None:
            per_dim = family.log_prob_per_dim(self.model.prior(), self.z) - family.log_prob_per_dim(q, self.z)
        return self.free_bits.active(per_dim, total)

    def _q_stop(self) -> Distribution:
        with torch.no_grad():  # q's parameters, without a path to phi
            return self.model.posterior(self.x)

    def kl_uses_samples(self) -> bool:
        """True when the family's KL is a Monte Carlo estimate from z (no closed form)."""
        try:
            self.model.kl(self.q)
        except ValueError:
            return True
        return False


def draw(model, x: torch.Tensor, k: int, objective: str, estimator: str = "auto", baseline: str = "none") -> Draw:
    """Encode x (B, *x_shape), pick the estimator, draw z (K, B, D) and score log p(x|z)."""
    q = model.posterior(x)
    est = ESTIMATORS[check(estimator, baseline, objective, k, q.has_rsample, kl_mismatch=model.family.kl_mismatch())](baseline)
    z = q.rsample((k,)) if est.pathwise else q.sample((k,))  # (K, B, D)
    return Draw(model, x, q, z, model.likelihood(z).log_prob(x), est)


def swap_gradient(value: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """value's forward value with t's gradient: value.detach() + t - t.detach()."""
    return value.detach() + (t - t.detach())


class Estimator:
    """Base class: ``elbo``/``iwae`` map (draw, bound (B,), beta) to a surrogate (B,)."""

    name = ""
    pathwise = True  # needs rsample
    needs_density_kl = False  # rewrites the KL as E_q[log q - log p] (see Family.kl_mismatch)
    bounds: tuple[str, ...] | None = ("elbo", "iwae")  # None: any bound that draws through estimators.draw
    min_k = 1

    def __init__(self, baseline: str = "none"):
        self.baseline = baseline

    @classmethod
    def applies_to(cls, objective: str) -> bool:
        return cls.bounds is None or objective in cls.bounds

    def elbo(self, d: Draw, bound: torch.Tensor, beta: float) -> torch.Tensor:
        return bound

    def iwae(self, d: Draw, bound: torch.Tensor, beta: float) -> torch.Tensor:
        return bound


@register("pathwise")
class Pathwise(Estimator):
    """The reparameterization trick: autograd of the bound through z = g(eps, phi)."""

    bounds = None


@register("iwae")
class PlainIWAE(Estimator):
    """The IWAE gradient of Burda et al. (2016, eq. 8): sum_k w~_k grad log w_k, w~ detached."""

    bounds = ("iwae",)


@register("stl")
class StickingTheLanding(Estimator):
    """Sticking the landing (Roeder, Wu & Duvenaud 2017).

    log q(z|x) enters with its parameters detached but z = g(eps, phi) attached: the
    dropped term, -grad_phi log q_phi(z) at fixed z, has expectation 0, so for the ELBO
    (any K, where the bound is mean_k log w_k) the estimate stays unbiased and its
    variance vanishes when q is the exact posterior. For the IWAE bound with K > 1 the
    dropped term sum_k w~_k grad log q(z_k) does *not* have mean 0: STL is biased there
    (Tucker et al. 2018, section 5), which DReG corrects. Under free bits only the KL
    groups above the floor enter (``Draw.log_ratio``), as in the bound; a family whose KL
    is not KL(q || p) of its own densities (``Family.kl_mismatch``) is refused.
    """

    needs_density_kl = True

    def stopped(self, d: Draw, beta: float) -> torch.Tensor:
        return d.log_px_z + beta * d.log_ratio(stop=True)  # (K, B)

    def elbo(self, d: Draw, bound: torch.Tensor, beta: float) -> torch.Tensor:
        return swap_gradient(bound, self.stopped(d, beta).mean(0))

    def iwae(self, d: Draw, bound: torch.Tensor, beta: float) -> torch.Tensor:
        return swap_gradient(bound, torch.logsumexp(self.stopped(d, beta), 0))


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

    bounds = ("iwae",)
    min_k = 2

    def iwae(self, d: Draw, bound: torch.Tensor, beta: float) -> torch.Tensor:
        lw = self.stopped(d, beta)  # (K, B)
        w = torch.softmax(lw.detach(), 0)
        if d.z.requires_grad:
            scale = ((1 - beta) + beta * w).unsqueeze(-1)  # (K, B, 1); times t's own w_k: c_k
            d.z.register_hook(lambda g: g * scale)
        return swap_gradient(bound, (w * lw).sum(0))


@register("score")
class ScoreFunction(Estimator):
    """Score function / REINFORCE / likelihood ratio (Williams 1992; Mnih & Gregor 2014).

    z is drawn without a path to phi. The surrogate is bound + sum_k A_k log q(z_k|x)
    (its value removed again), A_k detached: the bound at fixed z still gives the decoder
    gradient and the z-free terms (a closed-form KL); the second term gives
    E_q[A_k grad log q], with A_k = the learning signal minus a baseline (``baselines.py``).
    ELBO: per-sample signal v_k = log p(x|z_k) (+ beta (log p(z_k) - log q(z_k|x)) when the
    KL is Monte Carlo, only its groups above the floor under free bits), A_k = (v_k - b_k) / K.
    IWAE: v_k = log w_k, A_k = L_K - b_k. With a closed-form KL, free bits act through it.
    """

    pathwise = False

    def elbo(self, d: Draw, bound: torch.Tensor, beta: float) -> torch.Tensor:
        v = d.log_px_z
        if d.kl_uses_samples():
            v = v + beta * d.log_ratio()
        return self.surrogate(d, bound, v.detach(), Shape.MEAN)

    def iwae(self, d: Draw, bound: torch.Tensor, beta: float) -> torch.Tensor:
        v = d.log_px_z + beta * (d.log_pz() - d.log_q())
        return self.surrogate(d, bound, v.detach(), Shape.LOGMEANEXP)

    def surrogate(self, d: Draw, bound: torch.Tensor, v: torch.Tensor, shape: Shape) -> torch.Tensor:
        advantage, extra = BASELINES[self.baseline](d, v, shape)  # (K, B), (B,)
        t = (advantage.detach() * d.log_q()).sum(0) + extra
        return bound + (t - t.detach())
