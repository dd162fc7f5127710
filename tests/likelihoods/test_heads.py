"""Likelihood heads against independent computations: scipy, numeric integrals, exact sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from reparam import likelihoods
from reparam.errors import DataError
from reparam.likelihoods.logistic import discretized_logistic_log_prob

K, B = 3, 4
SHAPES = [(5, 5), (4, 4, 3)]


@pytest.mark.parametrize("name", likelihoods.names())
@pytest.mark.parametrize("x_shape", SHAPES)
def test_every_head_keeps_the_shape_contract(name, x_shape):
    head = likelihoods.get(name, x_shape)
    raw = torch.randn(K, B, head.raw_size, requires_grad=True)
    px = head(raw)
    assert px.batch_shape == (K, B) and px.event_shape == x_shape
    x = torch.randint(0, 256, (B, *x_shape)) / 255.0
    lp = px.log_prob(x)
    assert lp.shape == (K, B) and torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    assert head.mean(raw).shape == (K, B, *x_shape)


def levels_grid(levels: int, channels: int) -> torch.Tensor:
    """Every value a pixel of ``channels`` channels can take: (levels**channels, 1, 1, C) in [0, 1]."""
    k = torch.arange(levels, dtype=torch.float64) / (levels - 1)
    grids = torch.meshgrid(*[k] * channels, indexing="ij")
    return torch.stack(grids, -1).reshape(-1, 1, 1, channels)


@pytest.mark.parametrize("channels,levels", [(1, 256), (2, 256), (3, 16)])
def test_discretized_logistic_probabilities_sum_to_one(channels, levels):
    """Summed over every joint value of one pixel (coupled channels included), float64: 1 +- 1e-9."""
    torch.manual_seed(channels)
    head = likelihoods.get("discretized_logistic", (1, 1, channels), components=3, levels=levels)
    raw = (torch.randn(head.raw_size, dtype=torch.float64) * 2).requires_grad_(False)
    lp = head(raw).log_prob(levels_grid(levels, channels))
    assert float(torch.logsumexp(lp, 0).exp()) == pytest.approx(1.0, abs=1e-9)
    assert (lp <= 0).all()


def scipy_log_prob(y: float, loc: float, scale: float, levels: int = 256) -> float:
    """log P of bin y in [-1, 1] under a logistic, edges taking the tails (scipy's CDF)."""
    h = 1.0 / (levels - 1)
    dist = stats.logistic(loc, scale)
    upper = 1.0 if y > 1 - h else dist.cdf(y + h)
    lower = 0.0 if y < -1 + h else dist.cdf(y - h)
    return math.log(upper - lower)


@pytest.mark.parametrize("level", [0, 1, 100, 127, 254, 255])
@pytest.mark.parametrize("loc,scale", [(0.0, 0.1), (0.7, 0.02), (-0.95, 0.3), (0.2, 0.5)])
def test_discretized_logistic_matches_scipy(level, loc, scale):
    y = 2 * level / 255 - 1
    got = discretized_logistic_log_prob(torch.tensor(y, dtype=torch.float64), torch.tensor(loc, dtype=torch.float64),
                                        torch.tensor(scale, dtype=torch.float64), 256)
    assert float(got) == pytest.approx(scipy_log_prob(y, loc, scale), rel=1e-9, abs=1e-12)


def test_coupled_mixture_matches_a_hand_computation():
    """Two components, two channels: channel 1's mean moves by tanh(a) * y_0 (PixelCNN++)."""
    m, c = 2, 2
    head = likelihoods.get("discretized_logistic", (1, 1, c), components=m)
    raw = torch.randn(head.raw_size, dtype=torch.float64)
    px = head(raw)
    x = torch.tensor([[[[40 / 255, 200 / 255]]]], dtype=torch.float64)  # (1, 1, 1, 2)
    y = [2 * 40 / 255 - 1, 2 * 200 / 255 - 1]
    logits, loc, scale, coef = (t.reshape(-1).tolist() for t in (px.logits, px.loc, px.scale, px.coeffs))
    terms = []
    for j in range(m):
        mean1 = loc[2 * j + 1] + math.tanh(coef[j]) * y[0]
        terms.append(logits[j] - float(np.logaddexp.reduce(logits)) + scipy_log_prob(y[0], loc[2 * j], scale[2 * j])
                     + scipy_log_prob(y[1], mean1, scale[2 * j + 1]))
    assert float(px.log_prob(x)) == pytest.approx(float(np.logaddexp.reduce(terms)), rel=1e-9)


def test_discretized_logistic_stays_finite_far_from_the_mean():
    """Means outside [-1, 1] and the smallest scale: log space keeps every bin finite."""
    head = likelihoods.get("discretized_logistic", (2, 2), components=1)
    raw = torch.tensor([0.0, 5.0, -30.0] * 4)  # logit, mean 5 (off the range), scale -> min_scale
    x = torch.tensor([[0.0, 1 / 255], [128 / 255, 1.0]])
    lp = head(raw).log_prob(x)
    assert torch.isfinite(lp) and lp < -1000


def test_discretized_logistic_samples_follow_the_probabilities():
    """Chi-square of 20,000 draws in 8 bins of 32 levels; the 0.999 quantile (seeded) bounds it."""
    torch.manual_seed(0)
    head = likelihoods.get("discretized_logistic", (1, 1), components=3)
    raw = torch.randn(head.raw_size) * 0.8
    px = head(raw)
    probs = px.log_prob(levels_grid(256, 1).reshape(256, 1, 1).float()).exp().reshape(8, 32).sum(1).double()
    draws = px.sample((20000,)).reshape(-1)  # (20000,) on the grid
    counts = torch.bincount((draws * 255).round().long() // 32, minlength=8).double()
    chi2 = float(((counts - 20000 * probs) ** 2 / (20000 * probs)).sum())
    assert chi2 < stats.chi2.ppf(0.999, 7)
    assert torch.allclose(draws * 255, (draws * 255).round(), atol=1e-3)


def test_discretized_logistic_refuses_data_between_levels():
    head = likelihoods.get("discretized_logistic", (2, 2))
    head.check_data(torch.tensor([[0.0, 1.0], [17 / 255, 0.5 + 0.5 / 255]]), "x")
    with pytest.raises(DataError, match="between the 256 grey levels"):
        head.check_data(torch.full((2, 2), 0.3), "the training set")


@pytest.mark.parametrize("logit", [-12.0, -2.0, -1e-4, 0.0, 3e-3, 1.5, 9.0])
def test_continuous_bernoulli_normalizes_and_matches_its_formula(logit):
    """int_0^1 p(x) dx = 1 (scipy quad); log p = log C(lam) + x log lam + (1-x) log(1-lam),
    C(lam) = 2 artanh(1 - 2 lam) / (1 - 2 lam) (-> 2 at lam = 1/2, where log 2 stands in
    within |lam - 1/2| < 1e-3, an error below (2e-3)^2 / 3); the mean by quadrature."""
    head = likelihoods.get("continuous_bernoulli", (1,))
    px = head(torch.tensor([logit], dtype=torch.float64))
    lp = lambda x: float(px.log_prob(torch.tensor([x], dtype=torch.float64)))  # noqa: E731
    assert integrate.quad(lambda x: math.exp(lp(x)), 0, 1)[0] == pytest.approx(1.0, abs=1e-6)
    lam = 1 / (1 + math.exp(-logit))
    log_c = math.log(2.0) if abs(lam - 0.5) < 1e-3 else math.log(2 * math.atanh(1 - 2 * lam) / (1 - 2 * lam))
    for x in (0.0, 0.25, 0.9, 1.0):
        want = log_c + x * math.log(lam) + (1 - x) * math.log1p(-lam)
        assert lp(x) == pytest.approx(want, abs=1e-5 if abs(lam - 0.5) < 1e-3 else 1e-8)  # log 2 vs log C: <= (2e-3)^2 / 3
    mean = integrate.quad(lambda x: x * math.exp(lp(x)), 0, 1)[0]
    assert float(head.mean(torch.tensor([logit], dtype=torch.float64))) == pytest.approx(mean, abs=1e-5)


def test_continuous_bernoulli_refuses_values_outside_the_unit_interval():
    with pytest.raises(DataError, match="continuous Bernoulli"):
        likelihoods.get("continuous_bernoulli", (2,)).check_data(torch.tensor([0.5, 1.5]), "x")


def test_bernoulli_log_prob_matches_the_cross_entropy_in_float64():
    """x * l - softplus(l), summed, is the Bernoulli log-likelihood, also at saturated logits;
    in float32 it stays within 1e-5 nats per pixel of the float64 value."""
    g = torch.Generator().manual_seed(0)
    logits = torch.cat([torch.randn(7, 64, generator=g) * 4, torch.tensor([[-40.0, -20.0, 20.0, 40.0] * 16])])
    x = (torch.rand(8, 64, generator=g) < 0.5).double()
    head = likelihoods.get("bernoulli", (64,))
    ln, xn = logits.double().numpy(), x.numpy()  # log sigmoid(l) = -logaddexp(0, -l): no underflow at |l| = 40
    exact = torch.tensor((-xn * np.logaddexp(0, -ln) - (1 - xn) * np.logaddexp(0, ln)).sum(-1))
    assert torch.allclose(head(logits.double()).log_prob(x), exact, rtol=1e-12, atol=1e-9)
    assert torch.allclose(head(logits).log_prob(x.float()).double(), exact, atol=64 * 1e-5)


def test_bits_per_dim_of_a_discrete_likelihood():
    """evaluate's bits/dim = NLL / (pixels ln 2); under discretized logistic the NLL is a true
    -log P >= 0, and the untrained uniform-ish guess is a few bits, not negative."""
    from reparam import config, evaluate, model

    cfg = config.load(None, ["likelihood.name=discretized_logistic", "data.binarize=none", "model.hidden=[16]", "latent.dim=2"])
    vae = model.build(cfg, (4, 4, 3))
    x = torch.randint(0, 256, (20, 4, 4, 3)) / 255.0
    out = evaluate.evaluate(vae, x, k=8, dashboard=False)
    assert out["bits_per_dim"] == pytest.approx(out["nll"] / (48 * math.log(2)))
    assert 0 < out["bits_per_dim"] < 20 and -out["log_px_z"] > 0


TABLE_LAYOUT = ["real", "binary", "categorical:3", "real", "binary", "categorical:2"]


def table_rows(n: int, g: torch.Generator) -> torch.Tensor:
    """Coded rows of TABLE_LAYOUT (n, 9): reals, bits, one-hot categories."""
    cat3 = torch.nn.functional.one_hot(torch.randint(0, 3, (n,), generator=g), 3)
    cat2 = torch.nn.functional.one_hot(torch.randint(0, 2, (n,), generator=g), 2)
    bits = torch.randint(0, 2, (n, 2), generator=g)
    real = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return torch.cat([real[:, :1], bits[:, :1], cat3, real[:, 1:], bits[:, 1:], cat2], 1).double()


def test_table_head_matches_scipy_column_by_column():
    """log p(x|z) of each column against scipy (norm, bernoulli, multinomial with one trial), and
    log_prob their sum, for decoder outputs (K, B, F') and rows (B, F')."""
    g = torch.Generator().manual_seed(0)
    head = likelihoods.get("table", (9,), TABLE_LAYOUT, min_scale=0.05).double()
    with torch.no_grad():
        head.raw_scale.copy_(torch.tensor([-1.0, 0.7]))
    raw, x = torch.randn(K, B, 9, generator=g, dtype=torch.float64) * 2, table_rows(B, g)
    px = head(raw)
    got = px.column_log_prob(x)  # (K, B, 6)
    scale = (np.logaddexp(0, head.raw_scale.detach().numpy()) + 0.05).tolist()
    r, xn = raw.numpy(), x.numpy()
    softmax = lambda a: np.exp(a - np.logaddexp.reduce(a, -1, keepdims=True))  # noqa: E731
    want = np.stack([
        stats.norm.logpdf(xn[:, 0], r[..., 0], scale[0]),
        stats.bernoulli.logpmf(xn[:, 1], 1 / (1 + np.exp(-r[..., 1]))),
        np.array([[stats.multinomial.logpmf(xn[b, 2:5], 1, softmax(r[k, b, 2:5])) for b in range(B)] for k in range(K)]),
        stats.norm.logpdf(xn[:, 5], r[..., 5], scale[1]),
        stats.bernoulli.logpmf(xn[:, 6], 1 / (1 + np.exp(-r[..., 6]))),
        np.array([[stats.multinomial.logpmf(xn[b, 7:9], 1, softmax(r[k, b, 7:9])) for b in range(B)] for k in range(K)]),
    ], -1)  # fmt: skip
    assert got.shape == (K, B, 6) and np.allclose(got.detach().numpy(), want, rtol=1e-10, atol=1e-10)
    assert torch.allclose(px.log_prob(x), got.sum(-1), rtol=1e-12, atol=1e-12)
    assert px.batch_shape == (K, B) and px.event_shape == (9,)


def test_table_head_samples_follow_each_column():
    """20,000 draws of one row's distribution: real means within 4 standard errors, bit and level
    frequencies by chi-square below the 0.999 quantile (seeded)."""
    torch.manual_seed(0)
    head = likelihoods.get("table", (9,), TABLE_LAYOUT)
    raw = torch.tensor([1.5, -0.4, 0.2, -1.0, 0.9, -2.0, 2.2, 0.3, -0.3])
    px, n = head(raw), 20000
    draws = px.sample((n,))  # (n, 9)
    scale = head.scale().detach()
    for j, col in ((0, 0), (5, 1)):
        assert abs(float(draws[:, j].mean()) - float(raw[j])) < 4 * float(scale[col]) / math.sqrt(n)
    mean = px.mean
    for block in ([1], [2, 3, 4], [6], [7, 8]):
        p = mean[block].double() if len(block) > 1 else torch.stack([1 - mean[block[0]], mean[block[0]]]).double()
        counts = draws[:, block].sum(0).double() if len(block) > 1 else torch.stack([(1 - draws[:, block[0]]).sum(), draws[:, block[0]].sum()]).double()
        chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
        assert chi2 < stats.chi2.ppf(0.999, len(p) - 1)
    assert torch.equal(draws[:, 2:5].sum(1), torch.ones(n)) and set(draws[:, 1].unique().tolist()) <= {0.0, 1.0}


def test_table_head_refuses_rows_that_are_not_coded_and_images_refuse_columns():
    from reparam.errors import ConfigError

    head = likelihoods.get("table", (9,), TABLE_LAYOUT)
    g = torch.Generator().manual_seed(1)
    head.check_data(table_rows(5, g).float(), "x")
    bad = table_rows(5, g).float()
    bad[0, 3] = 1.0  # two levels of one categorical column
    with pytest.raises(DataError, match="not one-hot"):
        head.check_data(bad, "the training set")
    with pytest.raises(ConfigError, match="likelihood.name=table"):
        likelihoods.get("bernoulli", (9,), TABLE_LAYOUT)
    with pytest.raises(ConfigError, match="categorical:L"):
        likelihoods.get("table", (3,), ["real", "categorical:1", "binary"])
    with pytest.raises(DataError, match="row of 9 numbers"):
        likelihoods.get("table", (8,), TABLE_LAYOUT)
