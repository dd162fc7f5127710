"""The prior table: one row per registered prior (and per way of asking a prior of the labels: given
a label, and marginal), each carrying its own reference.

A row's reference is the prior written out as a mixture of diagonal Gaussians in float64 numpy
(``Mixture``), read from the module's parameters one component at a time: its log density is a
hand-written logsumexp over scipy's normal log densities, its moments E[z^m] are the Gaussian
moments weighted by the mixture. The tests compare ``distribution(...).log_prob`` with it, the
moments of ``sample(...)`` with it within standard errors, and check that a Monte Carlo KL
reaches every learned parameter. They never branch on a prior's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special, stats
from torch import nn

from reparam import latents, priors
from reparam.numerics import positive

Z = 4.0  # standard errors allowed by every statistical check
DIM, X_SHAPE = 3, (5,)


@dataclass
class Mixture:
    """p(z) = sum_k w_k prod_d N(z_d; loc_kd, scale_kd^2): weights (K,), loc and scale (K, D), float64."""

    weights: np.ndarray
    loc: np.ndarray
    scale: np.ndarray

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        """log p(z) for z (N, D): (N,)."""
        each = stats.norm.logpdf(z[:, None, :], self.loc, self.scale).sum(-1)  # (N, K)
        return special.logsumexp(each + np.log(self.weights), axis=1)

    def moment(self, m: int) -> np.ndarray:
        """E[z_d^m] (D,) for m in 1..4, from the normal moments of each component."""
        mu, s2 = self.loc, self.scale**2
        raw = {1: mu, 2: mu**2 + s2, 3: mu**3 + 3 * mu * s2, 4: mu**4 + 6 * mu**2 * s2 + 3 * s2**2}[m]  # (K, D)
        return self.weights @ raw


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def one(loc: torch.Tensor, scale: torch.Tensor) -> Mixture:
    """The mixture with equal weights of the Gaussians with rows loc, scale (K, D)."""
    k = len(loc)
    return Mixture(np.full(k, 1.0 / k), _np(loc), _np(scale))


def standard(prior, family, posterior) -> Mixture:
    return Mixture(np.ones(1), np.zeros((1, DIM)), np.ones((1, DIM)))  # the Gaussian family's N(0, I)


def mog(prior, family, posterior) -> Mixture:
    return Mixture(special.softmax(_np(prior.logits)), _np(prior.loc), _np(positive(prior.raw_scale)))


def vamp(prior, family, posterior) -> Mixture:
    """q(z | u_k) at each pseudo-input in turn, weights 1/K."""
    u = prior.pseudo_inputs()
    qs = [posterior(u[k : k + 1]).base_dist for k in range(len(u))]
    return one(torch.cat([q.loc for q in qs]), torch.cat([q.scale for q in qs]))


def label_given(c: int) -> Callable[..., Mixture]:
    def reference(prior, family, posterior) -> Mixture:
        return one(prior.loc[c : c + 1], positive(prior.raw_scale[c : c + 1]))

    return reference


def label_marginal(prior, family, posterior) -> Mixture:
    return one(prior.loc, positive(prior.raw_scale))


@dataclass
class Row:
    id: str
    prior: str
    reference: Callable[..., Mixture]
    components: int = 0
    label: int | None = None  # the class of the one-hot y handed to a prior of the labels; None: no label

    def build(self, seed: int = 0):
        """(prior, family, posterior) in float64: the prior's parameters moved by N(0, 0.5^2) from their
        start, and a posterior x (K, 5) -> q(z|x) through a fixed linear encoder."""
        torch.manual_seed(seed)
        family = latents.get("gaussian", DIM).double()
        prior = priors.get(self.prior, family, X_SHAPE, self.components).double()
        with torch.no_grad():
            for p in prior.parameters():
                p.add_(0.5 * torch.randn_like(p))
        encoder = nn.Linear(X_SHAPE[0], family.raw_size).double()
        return prior, family, lambda x: family.posterior(encoder(x))

    def y(self, n: int) -> torch.Tensor | None:
        """One-hot labels (n, C) of class ``label``, or None."""
        if self.label is None:
            return None
        return nn.functional.one_hot(torch.full((n,), self.label), self.components).double()


ROWS = [
    Row("standard", "standard", standard),
    Row("mog", "mog", mog, components=4),
    Row("vamp", "vamp", vamp, components=4),
    Row("label-given-y", "label", label_given(2), components=4, label=2),
    Row("label-marginal", "label", label_marginal, components=4),
]
