"""Priors: every row of the prior table (tests/priors/rows.py) against its reference mixture (log
density, sample moments, a KL reaching its parameters), the VampPrior of non-Gaussian families,
exact resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reparam import priors, runs
from reparam.model import build
from tests.conftest import tiny_config
from tests.helpers import assert_bad_config
from tests.priors.rows import DIM, ROWS, Z

ids = [r.id for r in ROWS]


def test_every_registered_prior_has_a_row():
    assert sorted(priors.names()) == sorted({r.prior for r in ROWS})


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_log_density_matches_the_reference(row):
    prior, family, posterior = row.build()
    z = 2 * torch.randn(50, DIM, dtype=torch.float64)
    got = prior.distribution(family, posterior, row.y(50)).log_prob(z)  # (50,)
    np.testing.assert_allclose(got.detach().numpy(), row.reference(prior, family, posterior).logpdf(z.numpy()), rtol=1e-10)


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_sample_moments(row):
    """The means of z and z^2 over n draws at temperature 1, each within 4 standard errors
    sqrt(Var / n) of the reference's (Var[z] = E z^2 - (E z)^2, Var[z^2] = E z^4 - (E z^2)^2)."""
    prior, family, posterior = row.build()
    ref, n = row.reference(prior, family, posterior), 100_000
    torch.manual_seed(1)
    z = prior.sample(n, 1.0, family, posterior, row.y(n)).double()  # (n, D)
    assert z.shape == (n, DIM)
    for stat, mean, var in ((z, ref.moment(1), ref.moment(2) - ref.moment(1) ** 2), (z * z, ref.moment(2), ref.moment(4) - ref.moment(2) ** 2)):
        se = np.sqrt(var / n)
        assert np.all(np.abs(stat.mean(0).numpy() - mean) <= Z * se), (stat.mean(0), mean, se)


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_a_monte_carlo_kl_is_nonnegative_and_reaches_every_learned_parameter(row):
    """KL(q || p) = E_q[log q(z) - log p(z)] from 256 draws of a Gaussian q per example: >= 0 within
    4 standard errors, and its gradient finite and non-zero for the encoder's raw numbers and for
    each of the prior's parameters (a fixed prior has none)."""
    prior, family, posterior = row.build()
    raw = (0.5 * torch.randn(8, family.raw_size, dtype=torch.float64)).requires_grad_()
    q = family.posterior(raw)
    z = q.rsample((256,))  # (256, 8, D)
    log_ratio = q.log_prob(z) - prior.distribution(family, posterior, row.y(8)).log_prob(z)  # (256, 8)
    kl, se = log_ratio.mean(0), log_ratio.std(0) / 16
    assert torch.all(kl + Z * se >= 0), (kl, se)
    kl.sum().backward()
    assert bool(list(prior.parameters())) == prior.learned
    for tensor in (raw, *prior.parameters()):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and bool(tensor.grad.abs().sum() > 0)


@pytest.mark.parametrize("family,extra", [("beta", []), ("spherical", [])])
def test_vamp_prior_is_the_mixture_of_the_posteriors_at_its_pseudo_inputs(family, extra):
    """The model's VampPrior for families other than the Gaussian (whose row in tests/priors/rows.py
    checks the mixture), through torch's MixtureSameFamily."""
    cfg = tiny_config("prior.name=vamp", "prior.components=5", f"latent.family={family}", *extra)
    torch.manual_seed(1)
    model = build(cfg, (8, 8)).double()
    u = model.prior_model.pseudo_inputs().detach()
    assert u.shape == (5, 8, 8) and float(u.min()) >= 0 and float(u.max()) <= 1
    z = model.posterior(torch.rand(6, 8, 8, dtype=torch.float64).bernoulli()).sample((3,))  # (3, 6, D)
    each = [model.posterior(u[k : k + 1]).log_prob(z) for k in range(5)]  # one pseudo-input at a time, (3, 6) each
    by_hand = torch.logsumexp(torch.stack(each), 0) - np.log(5)
    torch.testing.assert_close(model.prior().log_prob(z), by_hand)


@pytest.mark.parametrize("name", ["mog", "vamp"])
def test_a_learned_prior_gets_gradients_and_resumes_bit_for_bit(name, tmp_path):
    """Its parameters move in training; a run stopped after one epoch and resumed to two ends on the very
    weights (the prior's included) of a run trained for two epochs at once."""
    from reparam.train import resume, train

    opts = [f"prior.name={name}", "prior.components=6", "train.epochs=2"]
    whole = train(tiny_config(*opts), tmp_path / "whole")
    half = train(tiny_config(*opts[:-1], "train.epochs=1"), tmp_path / "half")
    resume(half, epochs=2, progress=False)
    a, b = runs.load_tensors(whole / runs.WEIGHTS), runs.load_tensors(half / runs.WEIGHTS)
    prior_keys = [k for k in a if k.startswith("prior_model.")]
    assert prior_keys and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = build(tiny_config(*opts), (8, 8)).state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in prior_keys)  # the prior learned
    summary = json.loads((whole / runs.SUMMARY).read_text())
    assert -summary["nll"] >= summary["elbo"] - 4 * summary["nll_se"]


BAD = [
    (["prior.name=gmm"], "unknown prior.name 'gmm'; valid: label, mog, standard, vamp"),
    (["prior.components=5"], "prior.components applies to a learned prior"),
    (["prior.name=mog", "prior.components=-2"], "prior.components must be >= 1"),
    (["prior.name=mog", "latent.family=dirichlet"], "prior.name=mog mixes Gaussians on R^D"),
    (["prior.name=vamp", "latent.family=categorical", "latent.classes=2"], "latent.kl=discrete"),
]


@pytest.mark.parametrize("overrides,needle", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_prior_settings_are_one_line_and_exit_2(overrides, needle, tmp_path, capsys):
    assert_bad_config(overrides, needle, tmp_path, capsys)
