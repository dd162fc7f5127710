"""The family table: one row per latent family (and per option that changes its sampler or KL).

A row carries its own independent reference, in the style of torch's ``(dist, scipy)``
pairs and Pyro's ``Fixture``: ``reference(fam, q)`` gives the statistic of a sample to
check, its expected mean and variance, and scipy's log density of a sample (or a stated
reason there is none); ``discrete(fam, q)`` gives torch's KL between the discrete
distributions a relaxed family stands for. The tests never branch on a family's name.
Rows for the families without ``rsample`` (score function only) live in
tests/objectives/test_estimators.py's EXACT table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import special, stats
from torch.distributions import Bernoulli, Categorical, kl_divergence

from reparam import latents
from reparam.latents.spherical import log_sphere_area

Z = 4.0  # standard errors allowed by every statistical check


@dataclass
class Reference:
    """statistic of samples z (N, D) -> (N, m); its expected mean and variance (m,); log q(z) for z (N, D) from scipy."""

    stat: Callable[[torch.Tensor], torch.Tensor]
    mean: np.ndarray
    var: np.ndarray
    logpdf: Callable[[np.ndarray], np.ndarray] | None = None
    no_logpdf: str = ""  # why scipy has nothing to compare log q with


@dataclass
class Row:
    id: str
    family: str
    reference: Callable[..., Reference]
    dim: int = 3
    options: dict = field(default_factory=dict)
    variant: bool = False  # an option that leaves the sampler unchanged: skip sampler-only tests
    large_dim: int = 240  # the dimension of the large-dimension finiteness check
    discrete: Callable[..., torch.Tensor] | None = None  # torch's KL of the discrete distributions behind q and p

    def build(self, dim: int | None = None) -> latents.Family:
        return latents.get(self.family, dim or self.dim, **self.options).double()

    def raw(self, fam: latents.Family, batch: int = 1, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return 0.8 * torch.randn(batch, fam.raw_size, generator=g, dtype=torch.float64)


def identity(z: torch.Tensor) -> torch.Tensor:
    return z


def _np(t: torch.Tensor) -> np.ndarray:
    return t[0].detach().numpy()


def scipy_reference(dist, stat=identity, transform=None) -> Reference:
    """A scipy distribution of the statistic; ``transform`` maps the latent z (numpy) to the
    variable scipy scores, returning (value, log |d value / dz|) so that log q(z) = logpdf + log |J|."""

    def logpdf(z: np.ndarray) -> np.ndarray:
        value, log_jac = (z, 0.0) if transform is None else transform(z)
        return (dist.logpdf(value) + log_jac).sum(-1)

    return Reference(stat, dist.mean(), dist.var(), logpdf)


def normal(fam, q) -> Reference:
    return scipy_reference(stats.norm(_np(q.base_dist.loc), _np(q.base_dist.scale)))


def laplace(fam, q) -> Reference:
    return scipy_reference(stats.laplace(_np(q.base_dist.loc), _np(q.base_dist.scale)))


def lognormal(fam, q) -> Reference:
    return scipy_reference(stats.lognorm(_np(q.base_dist.scale), scale=np.exp(_np(q.base_dist.loc))))


def full_normal(fam, q) -> Reference:
    cov = _np(q.scale_tril @ q.scale_tril.mT)
    dist = stats.multivariate_normal(_np(q.loc), cov)
    return Reference(identity, _np(q.loc), np.diag(cov), lambda z: dist.logpdf(z))


def relaxed_bits(fam, q) -> Reference:
    """The latent is the logit y: a logistic with location logits / tau and scale 1 / tau."""
    tau = float(fam.temperature_now)
    return scipy_reference(stats.logistic(_np(q.base_dist.logits) / tau, 1 / tau))


def logit_of(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z is logit(u): (u, log |du/dz|) = (sigmoid(z), log u + log(1 - u))."""
    u = special.expit(z)
    return u, np.log(u) + np.log1p(-u)


def beta(fam, q) -> Reference:
    a, b = _np(q.base_dist.concentration1), _np(q.base_dist.concentration0)
    return scipy_reference(stats.beta(a, b), stat=torch.sigmoid, transform=logit_of)


def kumaraswamy(fam, q) -> Reference:
    """u = sigmoid(z) ~ Kumaraswamy(a, b) and u^a ~ Beta(1, b); E[u^n] = b B(1 + n/a, b)."""
    a, b = _np(q.base_dist.concentration1), _np(q.base_dist.concentration0)
    m1, m2 = b * special.beta(1 + 1 / a, b), b * special.beta(1 + 2 / a, b)

    def logpdf(z: np.ndarray) -> np.ndarray:
        u, log_jac = logit_of(z)
        return (stats.beta.logpdf(u**a, 1, b) + np.log(a) + (a - 1) * np.log(u) + log_jac).sum(-1)

    return Reference(torch.sigmoid, m1, m2 - m1**2, logpdf)


def dirichlet(fam, q) -> Reference:
    """The latent is y = log u, u ~ Dirichlet, scored in its first D - 1 coordinates (Jacobian prod_(d<D) u_d)."""
    alpha = _np(q.concentration)

    def logpdf(z: np.ndarray) -> np.ndarray:
        u = np.exp(z)
        return np.array([stats.dirichlet.logpdf(v / v.sum(), alpha) for v in u]) + z[:, :-1].sum(-1)

    return Reference(torch.exp, stats.dirichlet.mean(alpha), stats.dirichlet.var(alpha), logpdf)


def relaxed_classes(fam, q) -> Reference:
    """y_k - y_0 = (l_k - l_0 + g_k - g_0) / tau is logistic; argmax y ~ Categorical(softmax(l))."""
    n, k, tau = fam.variables, fam.classes, float(fam.temperature_now)
    logits = _np(fam.logits(q))  # (N, K)
    diff = stats.logistic((logits[:, 1:] - logits[:, :1]) / tau, 1 / tau)
    probs = special.softmax(logits, -1)

    def stat(z):
        y = z.unflatten(-1, (n, k))
        onehot = torch.nn.functional.one_hot(y.argmax(-1), k).to(z.dtype)
        return torch.cat([(y[..., 1:] - y[..., :1]).flatten(-2), onehot.flatten(-2)], -1)

    mean = np.concatenate([diff.mean().ravel(), probs.ravel()])
    var = np.concatenate([diff.var().ravel(), (probs * (1 - probs)).ravel()])
    return Reference(stat, mean, var, None, "scipy has no ExpConcrete (relaxed one-hot in log space) density")


def spherical(fam, q) -> Reference:
    """t = mu^T z: (1 + t) / 2 ~ Beta((d-1)/2 + kappa, (d-1)/2); E[z] = E[t] mu; Var[z] from the paper.
    Density of z from that of t: p_t(t) = p(z) |S^(d-2)| (1 - t^2)^((d-3)/2)."""
    d, kappa, mu = fam.dim, float(q.scale[0]), q.loc[0]
    t = stats.beta((d - 1) / 2 + kappa, (d - 1) / 2)
    mean = np.concatenate([[2 * t.mean() - 1], _np(q.mean)])
    var = np.concatenate([[4 * t.var()], _np(q.variance)])

    def logpdf(zn: np.ndarray) -> np.ndarray:
        tt = zn @ mu.numpy()
        log_pt = t.logpdf((1 + tt) / 2) - np.log(2)
        return log_pt - log_sphere_area(d - 1) - (d - 3) / 2 * np.log1p(-(tt**2))

    return Reference(lambda z: torch.cat([(z * mu).sum(-1, keepdim=True), z], -1), mean, var, logpdf)


def discrete_bits(fam, q) -> torch.Tensor:
    logits = q.base_dist.logits
    return kl_divergence(Bernoulli(logits=logits), Bernoulli(probs=torch.full_like(logits, 0.5))).sum(-1)


def discrete_classes(fam, q) -> torch.Tensor:
    logits = fam.logits(q)
    return kl_divergence(Categorical(logits=logits), Categorical(logits=torch.zeros_like(logits))).sum(-1)


ROWS = [
    Row("gaussian", "gaussian", normal),
    Row("gaussian-full", "gaussian-full", full_normal, large_dim=30),  # raw size grows as D^2
    Row("laplace", "laplace", laplace),
    Row("lognormal", "lognormal", lognormal),
    Row("bernoulli", "bernoulli", relaxed_bits, options={"temperature": 0.5, "kl": "relaxed"}),
    Row("bernoulli-hard-discrete", "bernoulli", relaxed_bits, options={"temperature": 0.5, "hard": True, "kl": "discrete"},
        variant=True, discrete=discrete_bits),
    Row("categorical", "categorical", relaxed_classes, dim=6, options={"classes": 3, "temperature": 0.5, "kl": "relaxed"}),
    Row("categorical-hard-discrete", "categorical", relaxed_classes, dim=6, options={"classes": 3, "hard": True, "kl": "discrete"},
        variant=True, discrete=discrete_classes),
    Row("beta", "beta", beta, options={"prior_alpha": 0.8, "prior_beta": 2.0}),
    Row("kumaraswamy", "kumaraswamy", kumaraswamy),
    Row("kumaraswamy-series", "kumaraswamy", kumaraswamy, options={"prior_alpha": 2.0, "prior_beta": 3.0}, variant=True),
    Row("dirichlet", "dirichlet", dirichlet, options={"alpha0": 0.7}),
    Row("dirichlet-laplace", "dirichlet-laplace", normal, options={"alpha0": 0.5}),
    Row("spherical", "spherical", spherical),
]  # fmt: skip
SAMPLERS = [r for r in ROWS if not r.variant]
