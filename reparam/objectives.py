"""Bounds on log p(x). Pure functions: per-example terms, no reduction over the batch.

Every objective has the signature ``f(model, x, k=1, beta=1.0) -> (bound, terms)``
with ``bound`` of shape (B,) and ``terms`` a dict of (B,) tensors named by the keys
below, used unchanged in logs, summaries and tests.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import ConfigError

Terms = dict[str, torch.Tensor]
Objective = Callable[..., tuple[torch.Tensor, Terms]]
OBJECTIVES: dict[str, Objective] = {}


def call_kwargs(cfg, step: int) -> dict:
    """Keyword arguments for the configured objective at training step ``step``.

    The one place where objective schedules live, so the trainer stays generic.
    """
    return {"k": cfg.k, "beta": cfg.beta}


def register(name: str) -> Callable[[Objective], Objective]:
    def deco(fn: Objective) -> Objective:
        OBJECTIVES[name] = fn
        return fn

    return deco


def lookup(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; valid: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


@register("elbo")
def elbo(model, x: torch.Tensor, k: int = 1, beta: float = 1.0) -> tuple[torch.Tensor, Terms]:
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), averaged over k reparameterized samples.

    x: (B, *x_shape). Returns the beta-weighted bound (B,) (Higgins et al. 2017; beta=1 is
    the ELBO) and terms ``elbo``, ``log_px_z``, ``kl``, each (B,).
    """
    q = model.posterior(x)  # batch (B,), event (D,)
    z = q.rsample((k,))  # (K, B, D): the reparameterization trick
    log_px_z = model.likelihood(z).log_prob(x).mean(0)  # (B,), summed over pixels
    kl = model.kl(q, z)  # (B,)
    bound = log_px_z - beta * kl
    return bound, {"elbo": log_px_z - kl, "log_px_z": log_px_z, "kl": kl}


def log_weights(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x); shape (K, B)."""
    q = model.posterior(x)
    z = q.rsample((k,))  # (K, B, D)
    return model.likelihood(z).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)


@register("iwae")
def iwae(model, x: torch.Tensor, k: int = 1, beta: float = 1.0) -> tuple[torch.Tensor, Terms]:
    """IWAE bound (Burda et al. 2016): logsumexp_k(log w_k) - log K, shape (B,).

    With k=1 it equals a single-sample ELBO with a Monte Carlo KL. ``beta`` is unused.
    """
    lw = log_weights(model, x, k)  # (K, B)
    bound = torch.logsumexp(lw, 0) - math.log(k)
    return bound, {"iwae": bound}
