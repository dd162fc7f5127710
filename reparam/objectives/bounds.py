"""Bounds on log p(x): each a reduction over K samples, registered in one function.

A bound is a function that returns a :class:`~reparam.objectives.reductions.Reduction`,
registered with ``@bound(name)``; its keyword arguments are its options (config keys
``objective.<option>``, checked against the signature). Everything else is shared: the
draw of z, the per-sample values, the estimators, the terms. Every bound reports the same
terms, ``elbo``, ``log_px_z`` and ``kl`` (B,), plus its own value under its name when
that differs from the ELBO (``iwae``, ``renyi``). Pure functions: per-example values, no
reduction over the batch.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from . import estimators as est
from .draws import Draw, Signal, draw
from .free_bits import BatchMean, FreeBits
from .reductions import LOGMEANEXP, MEAN, Reduction, Renyi

Terms = dict[str, torch.Tensor]
Objective = Callable[..., tuple[torch.Tensor, Terms]]


@dataclass(frozen=True)
class Bound:
    """A registered bound: its reduction (a function of its options) and whether it subtracts its KL.

    ``analytic_kl``: the bound is mean_k log p(x|z_k) - beta KL, the KL a term of its own
    (closed form where the family has one, Monte Carlo otherwise; free bits floor it).
    Otherwise the KL enters every sample's weight, log w_k = log p(x|z_k) + beta (log p(z_k)
    - log q(z_k|x)).
    """

    name: str
    reduction: Callable[..., Reduction]
    analytic_kl: bool = False

    def options(self) -> dict[str, Any]:
        params = inspect.signature(self.reduction).parameters.values()
        return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


BOUNDS: Registry = Registry("objective")
OBJECTIVES: Registry = Registry("objective")  # name -> callable(model, x, **kwargs) -> (bound, terms)


def bound(name: str, analytic_kl: bool = False) -> Callable[[Callable[..., Reduction]], Callable[..., Reduction]]:
    """Register ``fn`` (keyword options -> Reduction) as bound ``name`` and as an objective."""

    def deco(fn: Callable[..., Reduction]) -> Callable[..., Reduction]:
        spec = Bound(name, fn, analytic_kl)
        BOUNDS.register(name)(spec)
        OBJECTIVES.register(name)(objective_for(spec))
        return fn

    return deco


def signal(d: Draw, spec: Bound, reduction: Reduction, beta: float | torch.Tensor, kl: torch.Tensor, closed_kl: bool) -> Signal:
    """The bound's per-sample values and penalty for draw ``d`` (see ``Signal``)."""
    if spec.analytic_kl and closed_kl:
        penalty = kl if d.free_bits is None else d.free_bits.penalty()
        return Signal(d, reduction, beta, d.log_px_z, beta * penalty)
    v = d.log_px_z + beta * d.log_ratio()
    return Signal(d, reduction, beta, v, 0.0 if d.free_bits is None else beta * d.free_bits.floor_part())


def kl_term(model, d: Draw) -> tuple[torch.Tensor, bool]:
    """KL(q || p) per example (B,), and whether it is closed form (else a Monte Carlo mean over d.z)."""
    try:
        return model.kl(d.q), True
    except ValueError:  # no closed form: the family asks for samples
        return model.kl(d.q, d.z), False


def bounds_for(cls: type[est.Estimator]) -> list[str]:
    """Bounds whose (default) reduction estimator class ``cls`` handles."""
    return [name for name in BOUNDS.names() if cls.applies_to(BOUNDS[name].reduction())]


def resolve(estimator: str, baseline: str, spec: Bound, k: int, has_rsample: bool, kl_mismatch: str | None,
            density_everywhere: bool, options: dict[str, Any]) -> str:  # fmt: skip
    """``estimators.check`` for bound ``spec`` with ``options``: the estimator's name, or its ConfigError.

    Called on every training step, it checks each combination once: a valid one is
    remembered, an invalid one raises the same one-line error every time it is asked.
    """
    key = (estimator, baseline, spec, k, has_rsample, kl_mismatch, density_everywhere, tuple(sorted(options.items())))
    try:
        hash(key)
    except TypeError:  # an option that cannot be a key (a list): checked afresh
        return _check(*key[:-1], options)
    return _resolved(*key)


@functools.lru_cache(maxsize=256)
def _resolved(estimator, baseline, spec, k, has_rsample, kl_mismatch, density_everywhere, options: tuple) -> str:
    return _check(estimator, baseline, spec, k, has_rsample, kl_mismatch, density_everywhere, dict(options))


def _check(estimator, baseline, spec, k, has_rsample, kl_mismatch, density_everywhere, options: dict[str, Any]) -> str:
    return est.check(estimator, baseline, spec.name, k, has_rsample, kl_mismatch=kl_mismatch, reduction=spec.reduction(**options),
                     bounds_for=bounds_for, density_everywhere=density_everywhere)  # fmt: skip


def compute(
    spec: Bound, model, x: torch.Tensor, k: int = 1, beta: float | torch.Tensor = 1.0, estimator: str = "auto", baseline: str = "none",
    baseline_state: nn.Module | None = None, free_bits: float = 0.0, free_bits_group: int = 1,
    batch_mean: BatchMean | None = None, **options: Any,
) -> tuple[torch.Tensor, Terms]:
    """Bound ``spec`` on x (B, *x_shape) with K samples: (surrogate (B,), terms).

    The surrogate has the bound's value and the gradient of ``estimator``. With free bits
    (``analytic_kl`` bounds only) the KL is floored per group, its mask chosen on the batch
    mean given by ``batch_mean``. Terms always describe the plain (beta = 1) quantities.
    """
    reduction = spec.reduction(**options)
    if free_bits > 0 and not spec.analytic_kl:
        raise ConfigError(f"objective.free_bits applies to a KL term; objective {spec.name!r} has none (use objective.name=elbo)")
    q = model.posterior(x)
    name = resolve(estimator, baseline, spec, k, q.has_rsample, model.family.kl_mismatch(), model.density_everywhere, options)
    d = draw(model, x, q, k, est.ESTIMATORS[name](baseline), baseline_state)
    kl, closed_kl = kl_term(model, d)  # (B,)
    if free_bits > 0:
        d.free_bits = FreeBits(model, d.q, kl, free_bits, free_bits_group, batch_mean, z=d.z)
    s = signal(d, spec, reduction, beta, kl, closed_kl)
    rec = d.log_px_z.mean(0)
    terms = {"elbo": rec - kl, "log_px_z": rec, "kl": kl}
    if not spec.analytic_kl:
        plain = not isinstance(beta, torch.Tensor) and beta == 1.0  # a tensor: one beta per member of a stack, (M, 1)
        terms[spec.name] = s.value().detach() if plain else reduction.value(d.log_px_z + d.log_ratio()).detach()
    return d.estimator.surrogate(s), terms


def objective_for(spec: Bound) -> Objective:
    """The objective function of a bound: (model, x, **kwargs) -> (surrogate (B,), terms)."""

    def objective(model, x: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, Terms]:
        return compute(spec, model, x, **kwargs)

    objective.__name__ = objective.__qualname__ = spec.name
    objective.__doc__ = spec.reduction.__doc__
    objective.bound = spec  # type: ignore[attr-defined]
    return objective


@bound("elbo", analytic_kl=True)
def elbo() -> Reduction:
    """ELBO = E_q[log p(x|z)] - beta KL(q(z|x) || p(z)), log p(x|z) averaged over K samples.

    beta = 1 is the ELBO of Kingma & Welling (2014); beta != 1 the beta-VAE of Higgins et al.
    (2017); with ``free_bits`` > 0 the KL is floored per group (Kingma et al. 2016, see
    ``FreeBits``). The terms always describe the plain ELBO.
    """
    return MEAN


@bound("iwae")
def iwae() -> Reduction:
    """IWAE bound (Burda et al. 2016): L_K = log mean_k w_k, rising with K towards log p(x).

    L_1 is the ELBO. With warm-up (beta < 1) the trained bound tempers the prior ratio,
    log w_k = log p(x|z_k) + beta (log p(z_k) - log q(z_k|x)); the ``iwae`` term always
    reports L_K itself. Autograd of the log-mean-exp is sum_k w~_k grad log w_k with the
    weights w~ = softmax(log w) held fixed (``normalized_weights``).
    """
    return LOGMEANEXP


@bound("renyi")
def renyi(*, alpha: float = 0.5) -> Reduction:
    """Renyi bound (Li & Turner 2016): L_alpha = 1/(1 - alpha) log mean_k w_k^(1 - alpha), alpha in [0, 1].

    alpha = 0 is the IWAE bound L_K and alpha -> 1 the ELBO; between them it falls as alpha
    rises. The ``renyi`` term reports L_alpha itself (beta = 1).
    """
    return Renyi(alpha)


def accepted(name: str) -> set[str]:
    """Names of the keyword arguments objective ``name`` takes (a bound's: the shared ones and its options)."""
    item = OBJECTIVES.lookup(name)
    spec = getattr(item, "bound", None)
    if spec is None:
        return set(inspect.signature(item).parameters) - {"model", "x"}
    shared = {"k", "beta", "estimator", "baseline", "baseline_state", "batch_mean"}
    return shared | ({"free_bits", "free_bits_group"} if spec.analytic_kl else set()) | set(spec.options())


def weight_terms(model, x: torch.Tensor, k: int):
    """The pieces of the importance weights: (log p(x|z_k) (K, B), log p(z_k) - log q(z_k|x) (K, B), q, z (K, B, D)),
    z_k ~ q(z|x) drawn by the reparameterization trick."""
    q = model.posterior(x)
    z = q.rsample((k,))  # (K, B, D)
    return model.likelihood(z).log_prob(x), model.prior().log_prob(z) - q.log_prob(z), q, z


def log_weights(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x); shape (K, B)."""
    log_px_z, log_ratio, _, _ = weight_terms(model, x, k)
    return log_px_z + log_ratio


def normalized_weights(lw: torch.Tensor) -> torch.Tensor:
    """Self-normalized importance weights w~_k = w_k / sum_j w_j, (K, B), detached.

    Computed in log space (exp(log w_k - logsumexp_j log w_j)), so no weight overflows.
    The IWAE gradient is grad L_K = sum_k w~_k grad log w_k (Burda et al. 2016, eq. 8).
    """
    return torch.softmax(lw.detach(), dim=0)
