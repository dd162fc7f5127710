"""Every registered latent family, table-driven: shapes, gradients, finiteness, moments,
log densities against scipy, KL, and unbiasedness of the pathwise gradient.

Statistical checks use fixed seeds and a 4-standard-error band, the standard error
computed from the samples themselves (or from the known variance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from scipy import special, stats

from reparam import latents
from reparam.latents.spherical import log_sphere_area

Z = 4.0  # standard errors allowed by every statistical check


@dataclass
class Row:
    id: str
    family: str
    dim: int = 3
    options: dict = field(default_factory=dict)
    variant: bool = False  # an option that leaves the sampler unchanged: skip sampler-only tests

    def build(self, dim: int | None = None) -> latents.Family:
        return latents.get(self.family, dim or self.dim, **self.options).double()

    def raw(self, fam: latents.Family, batch: int = 1, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return 0.8 * torch.randn(batch, fam.raw_size, generator=g, dtype=torch.float64)


ROWS = [
    Row("gaussian", "gaussian"),
    Row("gaussian-full", "gaussian-full"),
    Row("laplace", "laplace"),
    Row("lognormal", "lognormal"),
    Row("bernoulli", "bernoulli", options={"temperature": 0.5, "kl": "relaxed"}),
    Row("bernoulli-hard-discrete", "bernoulli", options={"temperature": 0.5, "hard": True, "kl": "discrete"}, variant=True),
    Row("categorical", "categorical", dim=6, options={"classes": 3, "temperature": 0.5, "kl": "relaxed"}),
    Row("categorical-hard-discrete", "categorical", dim=6, options={"classes": 3, "hard": True, "kl": "discrete"}, variant=True),
    Row("beta", "beta", options={"prior_alpha": 0.8, "prior_beta": 2.0}),
    Row("kumaraswamy", "kumaraswamy"),
    Row("kumaraswamy-series", "kumaraswamy", options={"prior_alpha": 2.0, "prior_beta": 3.0}, variant=True),
    Row("dirichlet", "dirichlet", options={"alpha0": 0.7}),
    Row("dirichlet-laplace", "dirichlet-laplace", options={"alpha0": 0.5}),
    Row("spherical", "spherical"),
]
SAMPLERS = [r for r in ROWS if not r.variant]
ids = [r.id for r in ROWS]


def test_every_registered_family_has_a_row():
    """Families with rsample are verified here; the exact discrete ones (no rsample, score
    function only) in tests/test_estimators.py's EXACT table."""
    from tests.test_estimators import EXACT

    assert sorted(latents.names()) == sorted({r.family for r in ROWS} | {f for f, _, _ in EXACT})


# --- shapes and gradients -------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_shapes(row):
    fam, (B, K, D) = row.build(), (5, 7, row.dim)
    q, p = fam.posterior(row.raw(fam, B)), fam.prior()
    assert q.batch_shape == (B,) and q.event_shape == (D,) and p.event_shape == (D,)
    assert q.rsample().shape == (B, D) and q.rsample((K,)).shape == (K, B, D)
    assert p.sample().shape == (D,) and p.sample((K, 2)).shape == (K, 2, D)
    z = q.rsample((K,))
    assert q.log_prob(z).shape == (K, B) and p.log_prob(z).shape == (K, B)
    assert fam.kl(q, z).shape == (B,) and fam.point(q).shape == (B, D)
    assert fam.decoder_input(z).shape == (K, B, D)


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_gradients_reach_every_raw_parameter(row):
    fam = row.build()
    raw = row.raw(fam, 8).requires_grad_()
    q = fam.posterior(raw)
    z = q.rsample((4,))  # (4, 8, D)
    c = torch.linspace(-1.0, 2.0, row.dim, dtype=raw.dtype)
    ((fam.decoder_input(z) * c).sum() + fam.kl(q, z).sum()).backward()
    assert torch.isfinite(raw.grad).all()
    assert (raw.grad != 0).all(), f"zero gradient at {(raw.grad == 0).nonzero().tolist()}"


def _finite_pass(fam, raw):
    raw = raw.float().requires_grad_()
    q, p = fam.posterior(raw), fam.prior()
    z = q.rsample((3,))
    terms = [z, q.log_prob(z), p.log_prob(z), fam.kl(q, z), fam.decoder_input(z), fam.point(q)]
    for t in terms:
        assert torch.isfinite(t).all()
    (terms[1].sum() - terms[2].sum() + terms[4].sum()).backward()
    assert torch.isfinite(raw.grad).all()


@pytest.mark.parametrize("row", ROWS, ids=ids)
@pytest.mark.parametrize("case", ["normal-sd3", "minus30", "plus30", "large-dim"])
def test_no_nan_or_inf(row, case):
    """raw ~ N(0, 3^2) and constant +-30 at the row's dimension; raw ~ N(0, 1) at D = 240.

    (gaussian-full is checked at D = 30: its raw size grows as D^2. Its log q(z) is finite
    but loses accuracy when L is ill-conditioned; see the family's docstring.)
    """
    dim = {"large-dim": 30 if row.family == "gaussian-full" else 240}.get(case, row.dim)
    fam = latents.get(row.family, dim, **row.options)
    g = torch.Generator().manual_seed(2)
    raw = (1.0 if case == "large-dim" else 3.0) * torch.randn(256, fam.raw_size, generator=g)
    if case in ("minus30", "plus30"):
        raw = torch.full_like(raw, -30.0 if case == "minus30" else 30.0)
    _finite_pass(fam, raw)


# --- moments and densities --------------------------------------------------------------


def _logistic(loc, scale):
    return stats.logistic(loc=loc, scale=scale)


def expected_moments(row, fam, q):
    """(statistic of samples z (N, D) -> (N, m), expected mean (m,), expected variance (m,))."""
    f = row.family
    if f in ("gaussian", "laplace", "dirichlet-laplace"):
        base = q.base_dist
        dist = (stats.laplace if f == "laplace" else stats.norm)(base.loc[0].numpy(), base.scale[0].numpy())
        return (lambda z: z), dist.mean(), dist.var()
    if f == "lognormal":
        dist = stats.lognorm(q.base_dist.scale[0].numpy(), scale=np.exp(q.base_dist.loc[0].numpy()))
        return (lambda z: z), dist.mean(), dist.var()
    if f == "gaussian-full":
        cov = (q.scale_tril @ q.scale_tril.mT)[0].numpy()
        return (lambda z: z), q.loc[0].numpy(), np.diag(cov)
    if f == "bernoulli":
        tau, logits = float(fam.temperature_now), q.base_dist.logits[0].numpy()
        dist = _logistic(logits / tau, 1 / tau)
        return (lambda z: z), dist.mean(), dist.var()
    if f == "categorical":
        return _categorical_moments(fam, q)
    if f in ("beta", "kumaraswamy"):  # the latent is logit(z): moments of z = sigmoid(y)
        a, b = (t[0].numpy() for t in (q.base_dist.concentration1, q.base_dist.concentration0))
        if f == "beta":
            return torch.sigmoid, stats.beta.mean(a, b), stats.beta.var(a, b)
        m1, m2 = b * special.beta(1 + 1 / a, b), b * special.beta(1 + 2 / a, b)  # E[z^n] = b B(1 + n/a, b)
        return torch.sigmoid, m1, m2 - m1**2
    if f == "dirichlet":  # the latent is log z
        alpha = q.concentration[0].numpy()
        return torch.exp, stats.dirichlet.mean(alpha), stats.dirichlet.var(alpha)
    return _spherical_moments(fam, q)


def _categorical_moments(fam, q):
    """y_k - y_0 = (l_k - l_0 + g_k - g_0) / tau is logistic; argmax y ~ Categorical(softmax(l))."""
    n, k, tau = fam.variables, fam.classes, float(fam.temperature_now)
    logits = fam.logits(q)[0].numpy()  # (N, K)
    diff = _logistic((logits[:, 1:] - logits[:, :1]) / tau, 1 / tau)
    probs = special.softmax(logits, -1)

    def stat(z):
        y = z.unflatten(-1, (n, k))
        onehot = torch.nn.functional.one_hot(y.argmax(-1), k).to(z.dtype)
        return torch.cat([(y[..., 1:] - y[..., :1]).flatten(-2), onehot.flatten(-2)], -1)

    mean = np.concatenate([diff.mean().ravel(), probs.ravel()])
    return stat, mean, np.concatenate([diff.var().ravel(), (probs * (1 - probs)).ravel()])


def _spherical_moments(fam, q):
    """t = mu^T z: (1 + t) / 2 ~ Beta((d-1)/2 + kappa, (d-1)/2); E[z] = E[t] mu; Var[z] from the paper."""
    d, kappa, mu = fam.dim, float(q.scale[0]), q.loc[0]
    t = stats.beta((d - 1) / 2 + kappa, (d - 1) / 2)
    mean = np.concatenate([[2 * t.mean() - 1], q.mean[0].numpy()])
    var = np.concatenate([[4 * t.var()], q.variance[0].numpy()])
    return (lambda z: torch.cat([(z * mu).sum(-1, keepdim=True), z], -1)), mean, var


@pytest.mark.parametrize("row", SAMPLERS, ids=[r.id for r in SAMPLERS])
def test_sample_moments(row):
    torch.manual_seed(3)
    fam, n = row.build(), 40_000
    q = fam.posterior(row.raw(fam))
    stat, mean, var = expected_moments(row, fam, q)
    s = stat(q.sample((n,))[:, 0]).numpy()  # (n, m)
    assert np.all(np.abs(s.mean(0) - mean) < Z * np.sqrt(var / n)), (s.mean(0), mean)
    sq = (s - s.mean(0)) ** 2
    assert np.all(np.abs(sq.mean(0) - var) < Z * sq.std(0) / np.sqrt(n)), (sq.mean(0), var)


def scipy_log_prob(row, fam, q, z):
    """log q(z) from scipy for samples z (n, D), or None where scipy has nothing to compare."""
    f, zn = row.family, z.numpy()
    if f in ("gaussian", "laplace", "dirichlet-laplace"):
        dist = stats.laplace if f == "laplace" else stats.norm
        return dist.logpdf(zn, q.base_dist.loc[0].numpy(), q.base_dist.scale[0].numpy()).sum(-1)
    if f == "lognormal":
        return stats.lognorm.logpdf(zn, q.base_dist.scale[0].numpy(), scale=np.exp(q.base_dist.loc[0].numpy())).sum(-1)
    if f == "gaussian-full":
        cov = (q.scale_tril @ q.scale_tril.mT)[0].numpy()
        return stats.multivariate_normal.logpdf(zn, q.loc[0].numpy(), cov)
    if f == "bernoulli":
        tau = float(fam.temperature_now)
        return _logistic(q.base_dist.logits[0].numpy() / tau, 1 / tau).logpdf(zn).sum(-1)
    if f in ("beta", "kumaraswamy"):  # y = logit(u): log q(y) = log q(u) + log u + log(1 - u)
        a, b = (t[0].numpy() for t in (q.base_dist.concentration1, q.base_dist.concentration0))
        u = special.expit(zn)
        jacobian = np.log(u) + np.log1p(-u)
        if f == "beta":
            return (stats.beta.logpdf(u, a, b) + jacobian).sum(-1)
        # u^a ~ Beta(1, b): change of variables with |d u^a / du| = a u^(a-1)
        return (stats.beta.logpdf(u**a, 1, b) + np.log(a) + (a - 1) * np.log(u) + jacobian).sum(-1)
    if f == "dirichlet":  # y = log u, scored in its first D - 1 coordinates: Jacobian prod_(d<D) u_d
        u = np.exp(zn)
        return np.array([stats.dirichlet.logpdf(v / v.sum(), q.concentration[0].numpy()) for v in u]) + zn[:, :-1].sum(-1)
    if f == "spherical":
        return _spherical_scipy_log_prob(fam, q, zn)
    return None  # categorical: scipy has no Concrete distribution


def _spherical_scipy_log_prob(fam, q, zn):
    """Density of z from that of t = mu^T z: p_t(t) = p(z) |S^(d-2)| (1 - t^2)^((d-3)/2)."""
    d, kappa = fam.dim, float(q.scale[0])
    t = zn @ q.loc[0].numpy()
    log_pt = stats.beta.logpdf((1 + t) / 2, (d - 1) / 2 + kappa, (d - 1) / 2) - np.log(2)
    return log_pt - log_sphere_area(d - 1) - (d - 3) / 2 * np.log1p(-(t**2))


@pytest.mark.parametrize("row", SAMPLERS, ids=[r.id for r in SAMPLERS])
def test_log_prob_matches_scipy(row):
    fam = row.build()
    q = fam.posterior(row.raw(fam))
    z = q.sample((200,))[:, 0]  # (200, D)
    ref = scipy_log_prob(row, fam, q, z)
    if ref is None:
        pytest.skip(f"scipy has no {row.family} distribution")
    np.testing.assert_allclose(q.log_prob(z.unsqueeze(1))[:, 0].numpy(), ref, rtol=1e-7, atol=1e-7)
