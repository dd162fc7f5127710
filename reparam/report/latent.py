"""Latent-space computations behind the figures and the explorer: tensors in, tensors out.

Nothing here names a family: every family-specific choice (how to sweep a dimension, how
to join two latents, what a temperature means) goes through the hooks of
``reparam.latents.Family`` (``traverse``, ``interpolate``, ``interpolation_kinds``,
``sample_prior``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..evaluate import diagnostics


@dataclass
class Ranking:
    """Latent dimensions ordered by how much information they carry.

    ``order`` (D,) lists dimensions, most informative first; ``scores`` (D,) holds the
    score of each dimension (indexed by dimension, not by rank); ``active`` (D,) marks
    active units (Burda et al. 2016); ``what`` names the score.
    """

    order: torch.Tensor
    scores: torch.Tensor
    active: torch.Tensor
    what: str


@contextmanager
def seeded(seed: int):
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def rank_dimensions(model, x: torch.Tensor) -> Ranking:
    """Order dimensions by mean KL(q(z_d|x) || p(z_d)) over x (B, *x_shape).

    Families whose dimensions are coupled have no per-dimension KL; they are ordered by
    activity Cov_x(E_q[z_d]) instead.
    """
    activity = diagnostics.activity(model, x).float()  # (D,)
    kl = diagnostics.kl_per_dim(model, x)
    scores, what = (activity, "activity Cov_x E[z_d]") if kl is None else (kl.float(), "KL (nats)")
    order = torch.argsort(scores, descending=True)
    return Ranking(order, scores, activity > diagnostics.ACTIVE_THRESHOLD, what)


@torch.inference_mode()
def points(model, x: torch.Tensor) -> torch.Tensor:
    """The family's representative latent of q(z|x) (its mean for most): (B, D)."""
    return diagnostics.posterior_points(model, x)


@torch.inference_mode()
def spread(model, x: torch.Tensor) -> torch.Tensor | None:
    """Posterior standard deviation per dimension, (B, D); None where q has none in closed form."""
    try:
        return model.posterior(x).stddev
    except NotImplementedError:
        return None


@torch.inference_mode()
def traversals(model, point: torch.Tensor, dims: list[int], steps: int) -> torch.Tensor:
    """Decoded sweeps of each dimension in ``dims`` around ``point`` (D,): (len(dims), steps, *x_shape)."""
    z = torch.stack([model.family.traverse(point, d, steps) for d in dims])  # (len(dims), steps, D)
    return model.decode_mean(z)


@torch.inference_mode()
def interpolation(model, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, kind: str) -> torch.Tensor:
    """Decoded path from latent a (D,) to b (D,) at fractions t (T,): (T, *x_shape)."""
    return model.decode_mean(model.family.interpolate(a, b, t, kind))


@torch.inference_mode()
def prior_samples(model, n: int, temperature: float, seed: int) -> torch.Tensor | None:
    """n decoded draws of p(z) at a temperature: (n, *x_shape); None if the family has none."""
    try:
        with seeded(seed):
            z = model.sample_prior(n, temperature)  # (n, D)
    except NotImplementedError:
        return None
    return model.decode_mean(z)


def prior_centre(model, fallback: torch.Tensor) -> torch.Tensor:
    """The mean of p(z), (D,), where it exists and lies in the support; else ``fallback`` (D,)."""
    p = model.prior()
    try:
        mean = p.mean
    except NotImplementedError:
        return fallback
    ok = bool(torch.isfinite(mean).all()) and bool(p.support.check(mean).all())
    return mean if ok else fallback


def separable(family, point: torch.Tensor) -> bool:
    """True when sweeping any dimension from ``point`` (D,) moves that coordinate alone."""
    for d in range(family.dim):
        z = family.traverse(point, d, 3)  # (3, D)
        others = torch.ones(family.dim, dtype=torch.bool)
        others[d] = False
        if not torch.equal(z[:, others], point[others].expand(3, -1)):
            return False
    return True


@torch.inference_mode()
def manifold(model, x: torch.Tensor, steps: int) -> torch.Tensor | None:
    """For D == 2, decoded latents on a steps x steps grid: (steps, steps, *x_shape), else None.

    The grid's axes are the family's own sweeps of each dimension through the prior's
    centre; None when the dimensions are coupled (simplex, sphere) or the grid leaves
    the support. ``x`` (B, *x_shape) supplies a data point to test the sweeps from.
    """
    fam = model.family
    if fam.dim != 2 or not separable(fam, points(model, x[:1])[0]):
        return None
    centre = prior_centre(model, points(model, x[:1])[0])  # (2,)
    u = fam.traverse(centre, 0, steps)[:, 0]  # (steps,)
    v = fam.traverse(centre, 1, steps)[:, 1].flip(0)  # (steps,), top row = largest value
    z = torch.stack(torch.meshgrid(v, u, indexing="ij")[::-1], dim=-1)  # (steps, steps, 2)
    if not bool(model.prior().support.check(z).all()):
        return None
    return model.decode_mean(z)


def project_2d(z: torch.Tensor) -> tuple[torch.Tensor, tuple[str, str]]:
    """Codes (N, D) -> (N, 2) and axis names: the codes when D <= 2, else their top 2 PCs."""
    z = z.float()
    if z.shape[1] == 1:
        return torch.cat([z, torch.zeros_like(z)], 1), ("z0", "")
    if z.shape[1] == 2:
        return z, ("z0", "z1")
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)  # v (D, D): principal axes in rows
    share = (s**2 / (s**2).sum()).tolist()
    return centred @ v[:2].T, (f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%})")


def distinct_pair(labels: torch.Tensor | None, n: int) -> tuple[int, int]:
    """Indices of two test images to interpolate between: different labels where known."""
    if n < 2:
        return 0, 0
    if labels is not None:
        other = (labels[:n] != labels[0]).nonzero()
        if len(other):
            return 0, int(other[0])
    return 0, 1
