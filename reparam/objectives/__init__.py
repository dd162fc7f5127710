"""Objectives: bounds on log p(x), their gradient estimators, and the training objective module.

- ``reductions``: how K per-sample values become one bound (mean, log-mean-exp, Renyi);
- ``bounds``: the registered bounds (``elbo``, ``iwae``, ``renyi``; each one function),
  the shared computation and its terms;
- ``draws``: K posterior samples and their densities; ``free_bits``: the KL floor;
- ``estimators`` and ``baselines``: the gradient, written once per estimator;
- ``module``: :class:`Objective`, the bound as an ``nn.Module`` that owns the estimator's
  state, and the objective schedules (KL warm-up);
- ``rules``: what an ``objective`` config section may say.

Every objective is a pure function ``f(model, x, k=1, beta=1.0, ...) -> (bound, terms)``
with ``bound`` of shape (B,) and ``terms`` a dict of (B,) tensors; the trainer maximizes
``bound.mean()``.
"""

from __future__ import annotations

from . import baselines, estimators, reductions, rules  # noqa: F401
from .baselines import baseline_module
from .bounds import (
    BOUNDS,
    OBJECTIVES,
    Terms,
    accepted,
    bound,
    bounds_for,
    log_weights,
    normalized_weights,
    weight_terms,
)
from .bounds import Objective as ObjectiveFn
from .free_bits import FreeBits, free_bits_kl
from .module import Objective, beta_at, call_kwargs, schedule_warning

elbo, iwae, renyi = OBJECTIVES["elbo"], OBJECTIVES["iwae"], OBJECTIVES["renyi"]


def lookup(name: str) -> ObjectiveFn:
    """The objective function registered as ``name`` (ConfigError naming the valid ones)."""
    return OBJECTIVES.lookup(name)


def reduction(cfg) -> reductions.Reduction | None:
    """The reduction of the bound an ``objective`` config section names (None: a whole objective function)."""
    return BOUNDS[cfg.name].reduction(**getattr(cfg, "options", {})) if cfg.name in BOUNDS else None


def register(name: str):
    """Register a whole objective function ``f(model, x, k=1, beta=1.0, ...) -> (bound, terms)``
    (one that draws its own z and takes no estimator); a bound that is a reduction over
    samples registers with ``@bound`` instead and gets every estimator."""
    return OBJECTIVES.register(name)


__all__ = [
    "BOUNDS", "OBJECTIVES", "FreeBits", "Objective", "Terms", "accepted", "baseline_module", "beta_at", "bound", "bounds_for",
    "call_kwargs", "elbo", "free_bits_kl", "iwae", "log_weights", "lookup", "normalized_weights", "reduction", "register", "renyi",
    "schedule_warning", "weight_terms",
]
