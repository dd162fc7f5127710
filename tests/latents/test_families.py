"""Every registered latent family, table-driven (tests/latents/rows.py): shapes, gradients,
finiteness, moments, log densities against scipy, and the view hooks staying in the support.

Statistical checks use fixed seeds and a 4-standard-error band, the standard error
computed from the samples themselves (or from the known variance).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reparam import latents
from tests.latents.rows import ROWS, SAMPLERS, Z

ids = [r.id for r in ROWS]


def test_every_registered_family_has_a_row():
    """Families with rsample are verified here; the exact discrete ones (no rsample, score
    function only) in tests/objectives/test_estimators.py's EXACT table."""
    from tests.objectives.test_estimators import EXACT

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
    dim = row.large_dim if case == "large-dim" else row.dim
    fam = latents.get(row.family, dim, **row.options)
    g = torch.Generator().manual_seed(2)
    raw = (1.0 if case == "large-dim" else 3.0) * torch.randn(256, fam.raw_size, generator=g)
    if case in ("minus30", "plus30"):
        raw = torch.full_like(raw, -30.0 if case == "minus30" else 30.0)
    _finite_pass(fam, raw)


# --- moments and densities --------------------------------------------------------------


@pytest.mark.parametrize("row", SAMPLERS, ids=[r.id for r in SAMPLERS])
def test_sample_moments(row):
    torch.manual_seed(3)
    fam, n = row.build(), 40_000
    q = fam.posterior(row.raw(fam))
    ref = row.reference(fam, q)
    s = ref.stat(q.sample((n,))[:, 0]).numpy()  # (n, m)
    assert np.all(np.abs(s.mean(0) - ref.mean) < Z * np.sqrt(ref.var / n)), (s.mean(0), ref.mean)
    sq = (s - s.mean(0)) ** 2
    assert np.all(np.abs(sq.mean(0) - ref.var) < Z * sq.std(0) / np.sqrt(n)), (sq.mean(0), ref.var)


@pytest.mark.parametrize("row", SAMPLERS, ids=[r.id for r in SAMPLERS])
def test_log_prob_matches_scipy(row):
    fam = row.build()
    q = fam.posterior(row.raw(fam))
    ref = row.reference(fam, q)
    if ref.logpdf is None:
        pytest.skip(ref.no_logpdf)
    z = q.sample((200,))[:, 0]  # (200, D)
    np.testing.assert_allclose(q.log_prob(z.unsqueeze(1))[:, 0].numpy(), ref.logpdf(z.numpy()), rtol=1e-7, atol=1e-7)


# --- views: traversals, interpolations, sliders and tempered samples stay in the support --


def _all_families():
    from tests.objectives.test_estimators import EXACT

    return [(r.family, r.dim, r.options) for r in SAMPLERS] + list(EXACT)


@pytest.mark.parametrize("family,dim,options", _all_families(), ids=[f for f, _, _ in _all_families()])
def test_views_stay_in_the_support(family, dim, options):
    """What the report and explorer draw for any family lies in its prior's support: a positive
    family is never swept to negative values, a simplex family stays on the simplex."""
    torch.manual_seed(4)
    fam = latents.get(family, dim, **options)
    support = fam.prior().support
    with torch.no_grad():
        q = fam.posterior(0.8 * torch.randn(2, fam.raw_size))
        a, b = fam.point(q)
        views = [fam.traverse(a, d, 7) for d in range(dim)]
        views += [fam.interpolate(a, b, torch.linspace(0, 1, 5), kind) for kind in fam.interpolation_kinds()]
        views += [fam.constrain(4 * torch.randn(16, dim)), fam.sample_prior(16, 0.5), fam.sample_prior(16)]
    for z in views:
        assert bool(support.check(z).all()), (family, z)
        assert bool(fam.prior().log_prob(z).isfinite().all()), (family, z)


def test_the_gaussian_kl_shortcut_is_torchs_normal_kl():
    """Gaussian.kl_per_dim's (mu^2 + s^2 - 1 - log s^2) / 2 against torch's registered
    Normal-Normal KL, clamped log-variances included, values and gradients."""
    family = latents.get("gaussian", 6)
    raw = torch.cat([torch.randn(40, 6) * 3, torch.linspace(-30, 30, 240).reshape(40, 6)], -1).requires_grad_()
    q = family.posterior(raw)
    ours = family.kl(q)
    theirs = torch.distributions.kl_divergence(q.base_dist, family.prior().base_dist).sum(-1)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    g_ours, g_theirs = (torch.autograd.grad(v.sum(), raw, retain_graph=True)[0] for v in (ours, theirs))
    assert torch.allclose(g_ours, g_theirs, rtol=1e-4, atol=1e-5)
