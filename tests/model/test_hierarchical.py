"""Hierarchical VAEs: the IS estimate against the exact marginal of a linear-Gaussian hierarchy,
the per-layer KL terms summing to the bound's, gradients reaching every layer, every estimator,
training with the report and explorer on the top layer, and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from reparam import evaluate, latents, likelihoods, objectives
from reparam.model import HierarchicalVAE, build
from tests.conftest import tiny_config
from tests.helpers import assert_bad_config

D1, D2, P, SIGMA = 3, 2, 5, 0.4


def linear(n_in: int, n_out: int, weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    net = nn.Linear(n_in, n_out)
    with torch.no_grad():
        net.weight.copy_(weight)
        net.bias.copy_(bias)
    return net


def linear_gaussian_hierarchy(offset: float = 0.2, widen: float = 0.4) -> tuple[HierarchicalVAE, torch.distributions.MultivariateNormal]:
    """z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, S), x | z1 ~ N(B z1 + b, SIGMA^2 I), S diagonal: x is Gaussian,
    N(B a + b, B (A A^T + S) B^T + SIGMA^2 I). The exact posterior factorizes bottom-up, p(z1|x) p(z2|z1)
    (x depends on z1 alone), both Gaussian and linear; the inference networks are set to them with
    diagonal covariances, shifted by ``offset`` and widened by ``widen`` in log-variance, so the
    importance weights vary but stay well behaved."""
    g = torch.Generator().manual_seed(0)
    a_w, a_b, s = torch.randn(D1, D2, generator=g), torch.randn(D1, generator=g), torch.tensor([0.6, 1.0, 1.3])
    b_w, b_b = torch.randn(P, D1, generator=g), torch.randn(P, generator=g)
    c1 = a_w @ a_w.T + torch.diag(s)  # Cov z1
    post1 = torch.linalg.inv(torch.linalg.inv(c1) + b_w.T @ b_w / SIGMA**2)  # Cov z1 | x
    gain1 = post1 @ b_w.T / SIGMA**2  # E[z1 | x] = gain1 x + shift1
    shift1 = post1 @ (torch.linalg.inv(c1) @ a_b - b_w.T @ b_b / SIGMA**2)
    post2 = torch.linalg.inv(torch.eye(D2) + a_w.T @ torch.diag(1 / s) @ a_w)  # Cov z2 | z1
    gain2 = post2 @ a_w.T @ torch.diag(1 / s)  # E[z2 | z1] = gain2 (z1 - a)
    fams = [latents.get("gaussian", D1), latents.get("gaussian", D2)]
    encoder = linear(P, 2 * D1, torch.cat([gain1, torch.zeros(D1, P)]), torch.cat([shift1 + offset, post1.diagonal().log() + widen]))
    up = linear(D1, 2 * D2, torch.cat([gain2, torch.zeros(D2, D1)]), torch.cat([-gain2 @ a_b + offset, post2.diagonal().log() + widen]))
    down = linear(D2, 2 * D1, torch.cat([a_w, torch.zeros(D1, D2)]), torch.cat([a_b, s.log()]))  # constant variance S
    decoder = linear(D1, P, b_w, b_b)
    model = HierarchicalVAE(encoder, fams, decoder, likelihoods.get("gaussian", (P,), scale=SIGMA), [up], [down]).eval()
    return model, torch.distributions.MultivariateNormal(b_w @ a_b + b_b, b_w @ c1 @ b_w.T + SIGMA**2 * torch.eye(P))


def test_is_estimate_matches_the_exact_marginal_of_a_linear_gaussian_hierarchy():
    """exp(L_K) is unbiased for p(x) (E[p_hat / p] = 1 within 4 SE), and L_K rises towards log p(x) with K."""
    model, marginal = linear_gaussian_hierarchy()
    torch.manual_seed(1)
    x = marginal.sample((1000,))
    true = marginal.log_prob(x)
    est, _ = evaluate.log_likelihood(model, x, k=50)
    ratio = torch.exp(est - true).double()
    se = float(ratio.std() / math.sqrt(len(ratio)))
    assert abs(float(ratio.mean()) - 1) < 4 * se, (float(ratio.mean()), se)
    est_500, _ = evaluate.log_likelihood(model, x, k=500)
    gap = (est_500 - est).double()
    assert float(gap.mean()) > 4 * float(gap.std() / math.sqrt(len(gap)))
    assert float((true - est_500).mean()) > -4 * float((true - est_500).double().std() / math.sqrt(len(x)))


def test_per_layer_kl_terms_sum_to_the_bound_and_gradients_reach_every_layer():
    cfg = tiny_config("model.stochastic=[3,2]", "model.stochastic_hidden=[8]")
    torch.manual_seed(2)
    model = build(cfg, (8, 8))
    x = torch.rand(16, 8, 8).bernoulli()
    q = model.posterior(x)
    z = q.rsample((4,))
    means, per_layer = model.layer_statistics(q, z)
    assert [m.shape[-1] for m in means] == [4, 3, 2] and per_layer.shape == (16, 3)
    torch.testing.assert_close(per_layer.sum(-1), model.kl(q, z))
    elbo = model.likelihood(z).log_prob(x).mean(0) - per_layer.sum(-1)
    (-elbo.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


@pytest.mark.parametrize("objective,k,spec", [("elbo", 1, "pathwise"), ("elbo", 2, "stl"), ("elbo", 1, "score:nvil"),
                                              ("iwae", 3, "dreg"), ("renyi", 3, "pathwise")])  # fmt: skip
def test_every_estimator_runs_on_a_hierarchy(objective, k, spec):
    from reparam.objectives import baselines

    estimator, _, baseline = spec.partition(":")
    torch.manual_seed(3)
    model = build(tiny_config("model.stochastic=[2]"), (8, 8))
    state = baselines.baseline_module(baseline or "none", (8, 8))
    bound, terms = objectives.lookup(objective)(model, torch.rand(8, 8, 8).bernoulli(), k=k, estimator=estimator,
                                                baseline=baseline or "none", baseline_state=state)  # fmt: skip
    (-bound.mean()).backward()
    assert bound.shape == (8,) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_two_layer_run_trains_reports_and_explores(tmp_path):
    from reparam.explore import Explorer
    from reparam.train import train

    run = train(tiny_config("model.stochastic=[2]", "train.epochs=3", "train.report=true"), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["layer_dims"] == [4, 2] and len(summary["active_units_per_layer"]) == 2
    assert -summary["nll"] >= summary["elbo"] - 4 * summary["nll_se"]
    assert (run / "report.html").is_file()
    ex = Explorer.open(run)
    assert ex.dim == 2 and ex.decode_png(ex.centre).startswith(b"\x89PNG")


BAD = [
    (["model.stochastic=[0]"], "model.stochastic sizes must be positive"),
    (["model.stochastic_hidden=[10]"], "model.stochastic_hidden applies between stochastic layers"),
    (["model.stochastic=[3]", "latent.family=categorical", "latent.dim=4", "latent.classes=2"], "model.stochastic: layer 2 of 3 units"),
    (["model.stochastic=[2]", "latent.family=bernoulli-exact"], "no reparameterized sample"),
    (["model.stochastic=[2]", "latent.family=bernoulli"], "latent.kl=discrete"),
    (["model.stochastic=[2]", "latent.flow=iaf"], "latent.flow applies to a one-layer model"),
    (["model.stochastic=[2]", "prior.name=vamp"], "applies to a one-layer model"),
]


@pytest.mark.parametrize("overrides,needle", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_hierarchy_settings_are_one_line_and_exit_2(overrides, needle, tmp_path, capsys):
    assert_bad_config(overrides, needle, tmp_path, capsys)


def test_free_bits_floor_each_layer_of_a_hierarchy():
    """objective.free_bits on a hierarchy: the KL term is sum_l max(lambda D_l, E_batch[KL_l]) with
    KL_l the layer's Monte Carlo term (before: one floor lambda * sum D_l on the total, which never
    binds on an upper layer); a layer below its floor adds no gradient."""
    from reparam.objectives import FreeBits

    torch.manual_seed(4)
    model = build(tiny_config("model.stochastic=[3]"), (8, 8))
    x = torch.rand(32, 8, 8).bernoulli()
    q = model.posterior(x)
    z = q.rsample((2,))
    _, per_layer = model.layer_statistics(q, z)  # (B, 2)
    mean = per_layer.detach().mean(0)
    lam = float(mean[1]) / 3 + 0.5  # layer 2 (3 units) below its floor, layer 1 (4 units) above its own
    assert float(mean[0]) > 4 * lam
    fb = FreeBits(model, q, per_layer.sum(-1), lam, z=z)
    assert fb.above.tolist() == [True, False]
    torch.testing.assert_close(fb.penalty().mean(), mean[0] + 3 * lam + (per_layer[:, 0] - mean[0]).mean())
    params = [p for p in model.parameters() if p.requires_grad]
    floored = torch.autograd.grad(fb.penalty().mean(), params, retain_graph=True, allow_unused=True)
    first = torch.autograd.grad(per_layer[:, 0].mean(), params, allow_unused=True)
    for a, b in zip(floored, first):
        assert (a is None and b is None) or torch.allclose(a, b)


# --- a learned mixture as the top layer's prior ------------------------------------------------


def test_a_mixture_top_prior_gives_the_joint_density_of_the_chain():
    """log p(z_1, z_2) = log sum_k pi_k N(z_2; mu_k, sigma_k) + log N(z_1; m(z_2), s(z_2)), by scipy in float64."""
    from scipy.special import logsumexp
    from scipy.stats import norm

    model = build(tiny_config("latent.dim=1", "model.stochastic=[1]", "prior.name=mog", "prior.components=3"), (8, 8)).double()
    with torch.no_grad():
        model.prior_model.loc.copy_(torch.tensor([[-2.0], [0.5], [3.0]]))
        model.prior_model.logits.copy_(torch.tensor([0.3, -1.0, 1.2]))
    z = 2 * torch.randn(50, 2, dtype=torch.float64)
    comp = model.prior_model.components_distribution().base_dist
    loc, scale = comp.loc.detach().numpy()[:, 0], comp.scale.detach().numpy()[:, 0]
    log_w = torch.log_softmax(model.prior_model.logits, -1).detach().numpy()
    top = logsumexp(log_w + norm.logpdf(z[:, 1:].numpy(), loc, scale), axis=1)
    below = model.generative(0, z[:, 1:])
    hand = top + norm.logpdf(z[:, 0].numpy(), below.base_dist.loc[:, 0].detach().numpy(), below.base_dist.scale[:, 0].detach().numpy())
    assert torch.allclose(model.prior().log_prob(z), torch.from_numpy(hand), atol=1e-10)
    draws = model.prior().sample((20000,))[:, 1]  # z_2 ~ p(z_2): the mixture's mean within 4 standard errors
    mean = float((torch.softmax(model.prior_model.logits, -1) * model.prior_model.loc[:, 0]).sum().detach())
    assert abs(float(draws.mean()) - mean) < 4 * float(draws.std()) / math.sqrt(len(draws))


def test_a_hierarchy_with_a_mixture_top_prior_trains_and_reloads(tmp_path):
    from reparam import runs
    from reparam.train import train

    run = train(tiny_config("model.stochastic=[2]", "prior.name=mog", "prior.components=4"), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    assert math.isfinite(summary["nll"]) and -summary["nll"] >= summary["elbo"] - 4 * summary["nll_se"]
    model = runs.load(run)
    assert model.prior_model.components == 4 and model.sample_prior(3).shape == (3, 2)
    assert not torch.equal(model.prior_model.logits, torch.zeros(4))  # learned with the model
