"""Learned priors: the mixture's log density against scipy, the VampPrior as the mixture of the
encoder's posteriors at its pseudo-inputs, gradients reaching the prior, exact resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import special, stats

from reparam import latents, priors, runs
from reparam.model import build
from tests.conftest import tiny_config
from tests.helpers import assert_bad_config


def test_mixture_of_gaussians_log_density_matches_scipy():
    torch.manual_seed(0)
    fam = latents.get("gaussian", 3)
    prior = priors.get("mog", fam, (8, 8), components=4).double()
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn_like(p))
    p = prior.distribution(fam, None)
    z = torch.randn(50, 3, dtype=torch.float64)
    pi = special.softmax(prior.logits.detach().numpy())
    comp = prior.components_distribution().base_dist
    loc, scale = comp.loc.detach().numpy(), comp.scale.detach().numpy()
    ref = special.logsumexp([np.log(pi[k]) + stats.norm.logpdf(z.numpy(), loc[k], scale[k]).sum(-1) for k in range(4)], axis=0)
    np.testing.assert_allclose(p.log_prob(z).detach().numpy(), ref, rtol=1e-10)


@pytest.mark.parametrize("family,extra", [("gaussian", []), ("beta", []), ("spherical", [])])
def test_vamp_prior_is_the_mixture_of_the_posteriors_at_its_pseudo_inputs(family, extra):
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
