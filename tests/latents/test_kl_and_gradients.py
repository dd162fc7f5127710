"""KL divergences and pathwise gradients of every family, checked against independent
estimates within 4 standard errors (the family table lives in tests/latents/rows.py).

For the relaxed families (bernoulli, categorical) the pathwise gradient is unbiased
for the *relaxed* objective E_q_tau[f(z)], which is what is checked here; it is a
biased estimate of the gradient of the discrete objective.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from reparam import latents
from tests.latents.rows import ROWS, SAMPLERS, Row, Z, relaxed_bits

ids = [r.id for r in ROWS]


def mean_and_se(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over dim 0 and its standard error."""
    return x.mean(0), x.std(0) / len(x) ** 0.5


def has_closed_form(row: Row) -> bool:
    fam = row.build()
    return row.discrete is not None or fam.has_closed_form_kl(fam.posterior(row.raw(fam)))


# --- KL -------------------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_kl_is_nonnegative(row):
    """Closed form: >= 0 to rounding. Monte Carlo: not below 0 by more than 4 standard errors."""
    torch.manual_seed(4)
    fam = row.build()
    q = fam.posterior(1.5 * row.raw(fam, 64))
    if has_closed_form(row):
        assert (fam.kl(q) >= -1e-10).all()
        return
    terms = q.log_prob(z := q.sample((4000,))) - fam.prior().log_prob(z)  # (4000, 64)
    mean, se = mean_and_se(terms)
    assert (mean + Z * se >= 0).all()


@pytest.mark.parametrize("row", [r for r in ROWS if has_closed_form(r) and r.discrete is None], ids=lambda r: r.id)
def test_closed_form_kl_matches_monte_carlo(row):
    torch.manual_seed(5)
    fam = row.build()
    q, p = fam.posterior(row.raw(fam, 4)), fam.prior()
    z = q.sample((40_000,))  # (M, 4, D)
    mean, se = mean_and_se(q.log_prob(z) - p.log_prob(z))
    closed = fam.kl(q)
    assert ((closed - mean).abs() < Z * se).all(), (closed, mean, se)


@pytest.mark.parametrize("row", [r for r in ROWS if r.discrete is not None], ids=lambda r: r.id)
def test_discrete_kl_matches_torch(row):
    """The 'discrete' KL equals torch's KL between the discrete distributions behind q and p."""
    fam = row.build()
    q = fam.posterior(2 * row.raw(fam, 8))
    ref = row.discrete(fam, q)
    torch.testing.assert_close(fam.kl(q), ref)
    per_dim = fam.kl_per_dim(q)
    if per_dim is not None:  # a per-dimension KL sums to the total
        torch.testing.assert_close(per_dim.sum(-1), ref)


def test_relaxed_bernoulli_kl_matches_quadrature():
    """Monte Carlo KL in logit space vs numerical integration of q log(q / p), per bit."""
    torch.manual_seed(6)
    row = Row("b", "bernoulli", relaxed_bits, options={"temperature": 0.6, "prior_temperature": 0.9, "kl": "relaxed"})
    fam = row.build()
    q, p = fam.posterior(row.raw(fam)), fam.prior()
    tau, logits = 0.6, q.base_dist.logits[0].numpy()
    ref = 0.0
    for logit in logits:
        qd, pd = stats.logistic(logit / tau, 1 / tau), stats.logistic(0, 1 / 0.9)
        ref += integrate.quad(lambda y, qd=qd, pd=pd: qd.pdf(y) * (qd.logpdf(y) - pd.logpdf(y)), -np.inf, np.inf)[0]
    z = q.sample((40_000,))  # (M, 1, D)
    _, se = mean_and_se(q.log_prob(z) - p.log_prob(z))  # one-sample KLs, (M, 1)
    assert abs(float(fam.kl(q, z)) - ref) < Z * float(se), (float(fam.kl(q, z)), ref)


# --- pathwise gradient ------------------------------------------------------------------


def linear(z, c):
    return (z * c).sum(-1)


def square(z, c):
    return (z**2 * c).sum(-1)


def softsign(z, c):
    return (torch.tanh(z + c) * c).sum(-1)


def closed_form_expectation(f, q, c):
    """E_q[f(z)] as a differentiable function of q's parameters, or None if unknown."""
    try:
        mean, var = q.mean, q.variance
    except NotImplementedError:
        return None
    if f is linear:
        return (mean * c).sum(-1)
    if f is square:
        return ((mean**2 + var) * c).sum(-1)
    return None


def per_sample_grads(fam, raw, n, objective):
    """Gradients (n, R) of objective(q, raw_n) w.r.t. n identical copies of raw (1, R)."""
    raw_n = raw.expand(n, -1).clone().requires_grad_()
    objective(fam.posterior(raw_n)).sum().backward()
    return raw_n.grad


def reference_gradient(fam, raw, f, c, n):
    """(mean, se) of an estimate of d E_q[f] / d raw independent of rsample: closed form or score function."""
    expectation = closed_form_expectation(f, fam.posterior(raw.requires_grad_()), c)
    if expectation is not None:
        (grad,) = torch.autograd.grad(expectation.sum(), raw)
        return grad[0], torch.zeros_like(grad[0])
    with torch.no_grad():
        baseline = f(fam.posterior(raw).sample((n,)), c).mean()  # independent draws: unbiased
    grads = per_sample_grads(fam, raw.detach(), n, lambda q: q.log_prob(z := q.sample()) * (f(z, c) - baseline))
    return mean_and_se(grads)


@pytest.mark.parametrize("f", [linear, square, softsign], ids=lambda f: f.__name__)
@pytest.mark.parametrize("row", SAMPLERS, ids=[r.id for r in SAMPLERS])
def test_pathwise_gradient_is_unbiased(row, f):
    torch.manual_seed(7)
    fam = row.build()
    raw = row.raw(fam)  # (1, R)
    c = torch.linspace(-1.0, 1.5, row.dim, dtype=raw.dtype)
    pathwise, se = mean_and_se(per_sample_grads(fam, raw, 40_000, lambda q: f(q.rsample(), c)))
    ref, ref_se = reference_gradient(fam, raw, f, c, 200_000)
    band = Z * torch.sqrt(se**2 + ref_se**2)
    assert ((pathwise - ref).abs() <= band).all(), (pathwise, ref, band)


# --- Kumaraswamy-Beta KL: E[log(1 - z)] for every (a, b) ----------------------------------


def expected_log1m_by_quad(a: float, b: float) -> float:
    """E[log(1 - z)], z ~ Kumaraswamy(a, b), by scipy's adaptive quadrature in float64.

    z = w^(1/a) with w ~ Beta(1, b); over t = -log w >= 0 the density is
    b e^(-t) (1 - e^(-t))^(b - 1) and log(1 - z) = log(-expm1(-t / a)).
    """

    def f(t):
        return b * np.exp(-t + (b - 1) * np.log(-np.expm1(-t))) * np.log(-np.expm1(-t / a))

    edges = [0.0, 1e-12, 1e-6, 1e-3, 1.0, 10.0, 100.0, np.inf]
    with np.errstate(all="ignore"):
        return sum(integrate.quad(f, lo, hi, limit=200, epsabs=1e-13)[0] for lo, hi in zip(edges[:-1], edges[1:]))


KUMA_GRID = [0.05, 0.3, 1.0, 3.0, 10.0, 50.0, 300.0]


def test_kumaraswamy_expected_log1m_matches_quadrature():
    """Every (a, b) of a grid that reaches a b = 90,000 (the old series tail diverged past a b ~ 272)."""
    from reparam.latents.kumaraswamy import expected_log1m

    a, b = (torch.tensor(v, dtype=torch.float64) for v in zip(*[(a, b) for a in KUMA_GRID for b in KUMA_GRID]))
    got = expected_log1m(a, b)
    ref = torch.tensor([expected_log1m_by_quad(float(x), float(y)) for x, y in zip(a, b)], dtype=torch.float64)
    torch.testing.assert_close(got, ref, rtol=1e-8, atol=1e-9)


def softplus_inv(c: float) -> float:
    """The raw number the family maps to concentration c (softplus + 1e-4)."""
    return math.log(math.expm1(c - 1e-4))


@pytest.mark.parametrize("a,b", [(300.0, 3.0), (10.0, 50.0), (0.4, 0.3), (2.0, 700.0)])
def test_kumaraswamy_beta_kl_matches_monte_carlo_at_large_ab(a, b):
    """KL(Kumaraswamy(a, b) || Beta(1, 5)) against a 400,000-sample Monte Carlo estimate (4 SE)."""
    torch.manual_seed(8)
    fam = latents.get("kumaraswamy", 1, prior_alpha=1.0, prior_beta=5.0).double()
    q = fam.posterior(torch.tensor([[softplus_inv(a), softplus_inv(b)]], dtype=torch.float64))
    z = q.sample((400_000,))
    mean, se = mean_and_se(q.log_prob(z) - fam.prior().log_prob(z))
    assert abs(float(fam.kl(q)) - float(mean)) < Z * float(se), (float(fam.kl(q)), float(mean), float(se))


def test_kumaraswamy_kl_gradient_is_finite_and_matches_finite_differences():
    """The quadrature is differentiable: autograd against central differences, a b up to 3,000."""
    from reparam.latents.kumaraswamy import expected_log1m

    for a, b in [(300.0, 3.0), (10.0, 50.0), (0.5, 0.5), (1000.0, 3.0)]:
        at, bt = torch.tensor(a, dtype=torch.float64, requires_grad=True), torch.tensor(b, dtype=torch.float64, requires_grad=True)
        ga, gb = torch.autograd.grad(expected_log1m(at, bt), (at, bt))
        ha, hb = 1e-5 * a, 1e-5 * b
        fa = (expected_log1m_by_quad(a + ha, b) - expected_log1m_by_quad(a - ha, b)) / (2 * ha)
        fb = (expected_log1m_by_quad(a, b + hb) - expected_log1m_by_quad(a, b - hb)) / (2 * hb)
        assert abs(float(ga) - fa) < 1e-6 * max(1.0, abs(fa)) and abs(float(gb) - fb) < 1e-6 * max(1.0, abs(fb)), (a, b, ga, fa, gb, fb)
