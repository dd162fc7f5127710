"""Bounds on log p(x). Pure functions: per-example terms, no reduction over the batch.

Every objective has the signature ``f(model, x, k=1, beta=1.0, ...) -> (bound, terms)``
with ``bound`` of shape (B,), the quantity the trainer maximizes (``-bound.mean()`` is the
loss), and ``terms`` a dict of (B,) tensors. Every objective reports the same keys,
``elbo``, ``log_px_z`` and ``kl`` (the IWAE adds ``iwae``), used unchanged in logs,
summaries and tests. Schedules (KL warm-up) live in :func:`call_kwargs` only.

Gradient estimators (``objective.estimator``, a separate module) plug in through the
pieces exposed here: :func:`weight_terms` gives log p(x|z), log p(z) - log q(z|x) and
the samples, :func:`normalized_weights` the detached self-normalized weights.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
from torch.distributions import Distribution

from . import estimators
from .errors import ConfigError

Terms = dict[str, torch.Tensor]
Objective = Callable[..., tuple[torch.Tensor, Terms]]
OBJECTIVES: dict[str, Objective] = {}


def beta_at(cfg, step: int) -> float:
    """KL weight at step ``step`` (0-based): beta * min(1, step / warmup), linear warm-up.

    Sonderby et al. (2016), Bowman et al. (2016): the KL weight rises from 0 to beta over
    the first ``cfg.warmup`` optimizer steps; ``warmup = 0`` gives beta from the start.
    """
    if cfg.warmup <= 0:
        return float(cfg.beta)
    return float(cfg.beta) * min(1.0, step / cfg.warmup)


def call_kwargs(cfg, step: int, batch_mean=None) -> dict:
    """Keyword arguments for the configured objective at training step ``step``.

    The one place where objective schedules live, so the trainer stays generic.
    ``batch_mean`` averages a (B, G) tensor over the global batch (several processes);
    free bits choose their mask with it.
    """
    kwargs = {"k": cfg.k, "beta": beta_at(cfg, step)}
    if (cfg.estimator, cfg.baseline) != ("auto", "none"):
        kwargs.update(estimator=cfg.estimator, baseline=cfg.baseline)
    if cfg.free_bits > 0:
        kwargs.update(free_bits=cfg.free_bits, free_bits_group=cfg.free_bits_group)
        if batch_mean is not None:
            kwargs.update(batch_mean=batch_mean)
    return kwargs


def schedule_warning(cfg, total_steps: int) -> str | None:
    """A one-line warning if the KL warm-up does not finish within ``total_steps``."""
    if cfg.warmup > total_steps:
        reached = beta_at(cfg, total_steps)
        return (
            f"objective.warmup={cfg.warmup} steps is longer than the {total_steps} steps trained; "
            f"the KL weight only reached {reached:.3g} of beta={cfg.beta:g}"
        )
    return None


def register(name: str) -> Callable[[Objective], Objective]:
    def deco(fn: Objective) -> Objective:
        OBJECTIVES[name] = fn
        return fn

    return deco


def lookup(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; valid: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


#: Bounds whose importance weights are p(x|z) p(z) / q(z|x): they need KL(q || p) to be the
#: KL of the family's own posterior and prior densities (see ``Family.kl_mismatch``).
WEIGHTED = {"iwae"}


def check_family(name: str, family) -> None:
    """ConfigError (one line) if bound ``name`` cannot score this family's model."""
    mismatch = family.kl_mismatch()
    if name in WEIGHTED and mismatch:
        raise ConfigError(f"objective.name={name} weighs samples by p(z) / q(z|x), but {mismatch}; use objective.name=elbo")


def accepted(name: str) -> set[str]:
    """Names of the keyword arguments objective ``name`` takes."""
    return set(inspect.signature(lookup(name)).parameters) - {"model", "x"}


class FreeBits:
    """Free bits (Kingma et al. 2016, eq. 15) on one minibatch: the KL per group, and which
    groups sit above the floor.

    The bound's KL term becomes sum_g max(lambda, E_batch[KL_g]), where KL_g is the KL of
    latent group g (``group`` consecutive dimensions; 1 = per dimension) and the max is
    taken on the minibatch average, as in the paper. It is written per example as
    sum_g (KL_bg if E_batch[KL_g] > lambda else lambda), whose batch mean equals the
    paper's term exactly, so a group below lambda gets zero gradient. The batch is read
    only to choose that mask, through ``batch_mean`` ((B, G) -> (G,), the plain mean by
    default; under several processes the mean over the global batch). Families without a
    per-dimension KL (coupled dimensions, Monte Carlo KL) get the floor on the total KL:
    max(lambda * D, E_batch[KL]), one group.
    """

    def __init__(self, family, q: Distribution, kl: torch.Tensor, lam: float, group: int = 1, batch_mean=None):
        per_dim = family.kl_per_dim(q)  # (B, D) or None
        self.group = None if per_dim is None else group
        if per_dim is None:
            self.parts, self.floor = kl.unsqueeze(-1), lam * family.dim  # (B, 1)
        else:
            d = per_dim.shape[-1]
            if d % group:
                raise ConfigError(f"objective.free_bits_group={group} does not divide latent.dim={d}")
            self.parts, self.floor = per_dim.unflatten(-1, (d // group, group)).sum(-1), lam  # (B, G)
        mean = batch_mean(self.parts.detach()) if batch_mean is not None else self.parts.detach().mean(0)
        self.above = mean > self.floor  # (G,)

    def penalty(self) -> torch.Tensor:
        """The floored KL per example, (B,)."""
        return torch.where(self.above, self.parts, torch.full_like(self.parts, self.floor)).sum(-1)

    def active(self, per_dim: torch.Tensor | None, total: torch.Tensor) -> torch.Tensor:
        """The part of a per-sample KL-like term that the bound keeps: the groups above the floor.

        per_dim (*S, B, D) (used when the KL is per dimension) or total (*S, B); returns (*S, B).
        """
        if self.group is None:
            return total * self.above[0]
        return (per_dim.unflatten(-1, (-1, self.group)).sum(-1) * self.above).sum(-1)


def free_bits_kl(model, q: Distribution, kl: torch.Tensor, lam: float, group: int = 1, batch_mean=None) -> torch.Tensor:
    """KL with free bits (Kingma et al. 2016, eq. 15), per example (B,): see :class:`FreeBits`."""
    return FreeBits(model.family, q, kl, lam, group, batch_mean).penalty()


@register("elbo")
def elbo(
    model, x: torch.Tensor, k: int = 1, beta: float = 1.0, free_bits: float = 0.0, free_bits_group: int = 1,
    estimator: str = "auto", baseline: str = "none", batch_mean=None,
) -> tuple[torch.Tensor, Terms]:
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), averaged over k samples.

    x: (B, *x_shape). Returns the bound log p(x|z) - beta * KL (Higgins et al. 2017; beta=1
    is the ELBO; with ``free_bits`` > 0 the KL is floored per group, see
    :class:`FreeBits`, its mask chosen with ``batch_mean``) of shape (B,) and the terms
    ``elbo``, ``log_px_z``, ``kl`` (B,), which always describe the plain ELBO.
    ``estimator``/``baseline`` choose the gradient (see estimators.py; each uses the same
    free-bits mask); the bound's value does not depend on them. The default draws z with
    the reparameterization trick wherever the family has ``rsample``.
    """
    d = estimators.draw(model, x, k, "elbo", estimator, baseline)  # z (K, B, D)
    log_px_z = d.log_px_z.mean(0)  # (B,), summed over pixels
    kl = model.kl(d.q, d.z)  # (B,)
    if free_bits > 0:
        d.free_bits = FreeBits(model.family, d.q, kl, free_bits, free_bits_group, batch_mean)
    bound = log_px_z - beta * (kl if d.free_bits is None else d.free_bits.penalty())
    return d.estimator.elbo(d, bound, beta), {"elbo": log_px_z - kl, "log_px_z": log_px_z, "kl": kl}


def weight_terms(model, x: torch.Tensor, k: int):
    """The pieces of the importance weights, for bounds and estimators.

    Returns (log p(x|z_k) (K, B), log p(z_k) - log q(z_k|x) (K, B), q, z (K, B, D)) with
    z_k ~ q(z|x) drawn by the reparameterization trick.
    """
    q = model.posterior(x)
    z = q.rsample((k,))  # (K, B, D)
    log_px_z = model.likelihood(z).log_prob(x)  # (K, B)
    return log_px_z, model.prior().log_prob(z) - q.log_prob(z), q, z


def log_weights(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x); shape (K, B)."""
    log_px_z, log_ratio, _, _ = weight_terms(model, x, k)
    return log_px_z + log_ratio


def normalized_weights(lw: torch.Tensor) -> torch.Tensor:
    """Self-normalized importance weights w~_k = w_k / sum_j w_j, (K, B), detached.

    Computed in log space (exp(log w_k - logsumexp_j log w_j)), so no weight overflows.
    The IWAE gradient is grad L_K = sum_k w~_k grad log w_k (Burda et al. 2016, eq. 8):
    the weights act as constants, hence the detach; estimators such as sticking-the-
    landing (Roeder et al. 2017) and DReG (Tucker et al. 2018) reuse them.
    """
    return torch.softmax(lw.detach(), dim=0)


@register("iwae")
def iwae(
    model, x: torch.Tensor, k: int = 1, beta: float = 1.0, estimator: str = "auto", baseline: str = "none"
) -> tuple[torch.Tensor, Terms]:
    """IWAE bound (Burda et al. 2016): L_K = logsumexp_k(log w_k) - log K, shape (B,).

    L_1 is the ELBO and L_K rises with K towards log p(x). With warm-up (``beta`` < 1) the
    trained bound tempers the prior ratio, log w_k = log p(x|z_k) + beta (log p(z_k) -
    log q(z_k|x)); the ``iwae`` term always reports L_K itself. Autograd of the
    logsumexp gives exactly sum_k w~_k grad log w_k with detached weights
    (:func:`normalized_weights`); ``estimator`` swaps in STL, DReG or the score function
    (estimators.py). Terms ``elbo``, ``log_px_z`` and ``kl`` are the ELBO's, averaged over
    the same K samples.
    """
    d = estimators.draw(model, x, k, "iwae", estimator, baseline)
    log_px_z, log_ratio = d.log_px_z, d.log_pz() - d.log_q()  # (K, B) each
    bound_1 = torch.logsumexp(log_px_z + log_ratio, 0) - math.log(k)
    bound = bound_1 if beta == 1.0 else torch.logsumexp(log_px_z + beta * log_ratio, 0) - math.log(k)
    kl = model.kl(d.q, d.z)  # (B,)
    rec = log_px_z.mean(0)
    return d.estimator.iwae(d, bound, beta), {"iwae": bound_1, "elbo": rec - kl, "log_px_z": rec, "kl": kl}
