"""Evaluation: IS log-likelihood against a closed form, chunking, I(x; z), the eval command."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from reparam import data, evaluate, latents, likelihoods, runs
from reparam.cli import main
from reparam.errors import ConfigError
from reparam.evaluate import diagnostics
from reparam.model import VAE
from reparam.networks import Decoder, Encoder

D, P, SIGMA = 3, 6, 0.5


def linear_gaussian(offset: float = 0.3, widen: float = 0.4) -> VAE:
    """z ~ N(0, I_D), x | z ~ N(W z + b, SIGMA^2 I_P), built from reparam's own classes.

    W has orthogonal columns, so the true posterior is diagonal: N(A (x - b), S) with
    S = (I + W^T W / SIGMA^2)^-1 and A = S W^T / SIGMA^2. The encoder is that posterior,
    deliberately perturbed (``offset`` on the mean, ``widen`` on the log-variance), so the
    importance weights vary and the estimate has a real standard error.
    """
    g = torch.Generator().manual_seed(0)
    w = torch.linalg.qr(torch.randn(P, D, generator=g))[0] * torch.tensor([2.0, 1.0, 0.5])  # (P, D)
    b = torch.randn(P, generator=g)
    s = torch.linalg.inv(torch.eye(D) + w.T @ w / SIGMA**2)
    a = s @ w.T / SIGMA**2  # (D, P)
    enc, dec = Encoder((P,), [], 2 * D), Decoder(D, [], P)
    with torch.no_grad():
        enc.net[0].weight.copy_(torch.cat([a, torch.zeros(D, P)]))
        enc.net[0].bias.copy_(torch.cat([-a @ b + offset, torch.log(torch.diagonal(s)) + widen]))
        dec.net[0].weight.copy_(w)
        dec.net[0].bias.copy_(b)
    model = VAE(enc, latents.get("gaussian", D), dec, likelihoods.get("gaussian", (P,), scale=SIGMA))
    model.marginal = torch.distributions.MultivariateNormal(b, w @ w.T + SIGMA**2 * torch.eye(P))
    return model.eval()


def test_is_log_likelihood_matches_closed_form():
    """exp(L_K) is an unbiased estimate of p(x): E[p_hat / p] = 1 within 4 SE; L_K itself is
    biased low (Jensen), by less as K grows (Burda et al. 2016, Theorem 1)."""
    model = linear_gaussian()
    x = model.marginal.sample((2000,))  # the K=20 vs K=200 gap is ~0.06 nats: N=400 gives only ~3.5 SE
    true = model.marginal.log_prob(x)
    est, ess = evaluate.log_likelihood(model, x, k=20)
    ratio = torch.exp(est - true).double()  # (N,)
    se = float(ratio.std() / math.sqrt(len(ratio)))
    assert 0 < se and abs(float(ratio.mean()) - 1) < 4 * se, (float(ratio.mean()), se)
    assert torch.all((ess >= 1 - 1e-4) & (ess <= 20 + 1e-4))
    est_200, _ = evaluate.log_likelihood(model, x, k=200)
    gap_20, gap_200 = (true - est).double(), (true - est_200).double()
    diff = gap_20 - gap_200
    assert float(diff.mean()) > 4 * float(diff.std() / math.sqrt(len(diff)))


def test_exact_posterior_gives_exact_likelihood_and_full_ess():
    model = linear_gaussian(offset=0.0, widen=0.0)
    x = model.marginal.sample((50,))
    est, ess = evaluate.log_likelihood(model, x, k=8)
    assert torch.allclose(est, model.marginal.log_prob(x), atol=1e-3)
    assert torch.allclose(ess, torch.full_like(ess, 8.0), atol=1e-2)


def test_chunking_matches_unchunked_for_a_fixed_seed():
    model = linear_gaussian()
    x = model.marginal.sample((37,))
    whole, ess_whole = evaluate.log_likelihood(model, x, k=50, max_elements=10**9, seed=3)
    for max_elements in (P, 7 * P, 130 * P):  # one sample; a few; several examples at once
        part, ess_part = evaluate.log_likelihood(model, x, k=50, max_elements=max_elements, seed=3)
        assert torch.allclose(whole, part, atol=1e-4)
        assert torch.allclose(ess_whole, ess_part, rtol=1e-3)
    other, _ = evaluate.log_likelihood(model, x, k=50, seed=4)
    assert not torch.allclose(whole, other)
    many, _ = evaluate.log_likelihood(model, x, k=1100, max_elements=10**9, seed=3)  # several draw groups
    assert torch.allclose(many, evaluate.log_likelihood(model, x, k=1100, max_elements=3 * P, seed=3)[0], atol=1e-4)


def test_bf16_decoder_stays_close_to_fp32(tiny_run):
    """precision="bf16" really decodes in bfloat16 (results differ) and moves log p(x) by
    far less than its standard error: bfloat16 keeps 8 bits of mantissa (relative error
    2**-9), measured 3e-4 nats on average and 5e-3 at most on the digits run."""
    model = runs.load(tiny_run)
    x = data.load(model.config.data).test[:100]
    fp32, _ = evaluate.log_likelihood(model, x, k=64)
    bf16, _ = evaluate.log_likelihood(model, x, k=64, precision="bf16")
    diff = (bf16 - fp32).double()
    assert not torch.equal(bf16, fp32)
    assert abs(float(diff.mean())) < 0.01 and float(diff.abs().max()) < 0.05
    assert float(fp32.double().std() / 10) > 0.05  # the bound is well below the SE of the estimate
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16"):
        evaluate.log_likelihood(model, x, k=4, precision="fp16")


def test_evaluation_leaves_global_rng_alone():
    model = linear_gaussian()
    state = torch.get_rng_state()
    evaluate.log_likelihood(model, torch.zeros(3, P), k=4)
    assert torch.equal(state, torch.get_rng_state())


class _Constant(nn.Module):
    """An encoder that ignores x: q(z|x) = p(z) for every x."""

    def forward(self, x):
        return torch.zeros(*x.shape[:-1], 2 * D)


def test_mutual_information_zero_when_posterior_is_prior():
    model = linear_gaussian()
    model.encoder = _Constant()
    out = diagnostics.mutual_information(model, torch.randn(200, P))
    assert out["mi"] == pytest.approx(0.0, abs=1e-5)
    assert out["kl_marginal"] == pytest.approx(0.0, abs=1e-5)


def test_mutual_information_within_bounds_and_grows_with_information():
    x = linear_gaussian().marginal.sample((300,))
    sharp, vague = linear_gaussian(widen=-4.0), linear_gaussian(widen=2.0)
    mi_sharp = diagnostics.mutual_information(sharp, x)
    mi_vague = diagnostics.mutual_information(vague, x)
    for out in (mi_sharp, mi_vague):
        assert 0.0 <= out["mi"] <= out["mi_max"] == pytest.approx(math.log(300))
    assert mi_sharp["mi"] > mi_vague["mi"] + 4 * (mi_sharp["mi_se"] + mi_vague["mi_se"])


def test_mutual_information_chunking_invariant():
    model, x = linear_gaussian(), torch.randn(120, P)
    a = diagnostics.mutual_information(model, x, n_queries=50, max_elements=10**8)
    b = diagnostics.mutual_information(model, x, n_queries=50, max_elements=2 * 120 * D)
    assert a["mi"] == pytest.approx(b["mi"], abs=1e-5)


def test_pairwise_log_prob_is_the_broadcast_table():
    """DiagonalNormal.pairwise_log_prob (one matrix product) equals log q(z_i|x_n) broadcast,
    and the aggregate posterior through it equals the generic chunked path."""
    g = torch.Generator().manual_seed(0)
    loc, logvar = torch.randn(40, D, generator=g) * 3, torch.randn(40, D, generator=g) * 2 - 3  # scales down to ~0.01
    q = latents.get("gaussian", D).posterior(torch.cat([loc, logvar], -1))
    z = loc[:7] + 0.1 * torch.randn(7, D, generator=g)
    broadcast = q.log_prob(z.unsqueeze(1))  # (7, 40)
    assert torch.allclose(q.pairwise_log_prob(z).float(), broadcast, rtol=1e-5, atol=1e-3)
    plain = torch.distributions.Independent(torch.distributions.Normal(q.base_dist.loc, q.base_dist.scale), 1)
    fast, generic = diagnostics._log_aggregate(q, z, 10**6), diagnostics._log_aggregate(plain, z, 10**6)
    assert torch.allclose(fast, generic, rtol=1e-5, atol=1e-3)


def test_eval_json_has_dashboard(tiny_run, capsys):
    assert main(["eval", str(tiny_run), "--k", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("nll", "nll_se", "bits_per_dim", "ess", "active_units", "kl_per_dim", "mi", "kl_marginal"):
        assert key in out
    assert 0 <= out["active_units"] <= out["latent_dim"] == len(out["kl_per_dim"])
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert {"mi", "active_units", "kl_per_dim", "ess"} <= set(summary)


@pytest.mark.parametrize("k", ["0", "-3"])
def test_eval_bad_k(tiny_run, k, capsys):
    assert main(["eval", str(tiny_run), "--k", k]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--k must be >= 1" in err


def test_eval_without_checkpoint(tiny_run, tmp_path, capsys):
    (tmp_path / "config.json").write_text((tiny_run / "config.json").read_text())
    assert main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint" in err


def test_warmup_longer_than_training_warns_in_summary(tmp_path):
    from reparam.train import train
    from tests.conftest import tiny_config

    with pytest.warns(UserWarning, match="warmup"):
        run = train(tiny_config("objective.warmup=100000", "train.epochs=1"), tmp_path / "run")
    assert "warmup" in json.loads((run / "summary.json").read_text())["warnings"][0]


def test_shipped_mnist_recipe_is_valid():
    from reparam import config
    from tests.conftest import ROOT

    cfg = config.load(ROOT / "configs" / "mnist.toml")
    assert (cfg.data.name, cfg.latent.dim, cfg.model.hidden, cfg.model.activation) == ("mnist", 50, [200, 200], "tanh")
    assert cfg.train.budget_seconds == 15 * 60 and cfg.train.threads == "auto"  # 15 minutes on any machine


class Constant(nn.Module):
    """A network whose output ignores its input: (*batch, any) -> (*batch, len(raw))."""

    def __init__(self, raw: torch.Tensor):
        super().__init__()
        self.register_buffer("raw", raw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.raw.expand(*x.shape[:-1], len(self.raw))


SPARSE = [("beta", {"prior_alpha": 0.1, "prior_beta": 0.1}), ("kumaraswamy", {"prior_alpha": 0.1, "prior_beta": 0.1}),
          ("dirichlet", {"alpha0": 0.1})]


@pytest.mark.parametrize("family,options", SPARSE, ids=[s[0] for s in SPARSE])
def test_importance_sampling_never_sits_above_a_known_answer_with_a_sparse_prior(family, options):
    """A decoder that ignores z makes log p(x) = log p(x|z) exactly, and log w_k = log p(x) +
    log p(z_k) - log q(z_k|x), so E[L_K] <= log p(x) (Jensen). Posterior concentrations 0.02 under
    a prior at 0.1, D = 10: the draws sit within 1e-30 of the support's edges, where float32
    rounding of z used to lift the estimate 3-4 nats above the truth."""
    torch.manual_seed(0)
    fam = latents.get(family, 10, **options)
    raw = torch.full((fam.raw_size,), math.log(math.expm1(0.02 - 1e-4)))  # softplus(raw) + 1e-4 = 0.02
    logits = torch.linspace(-1.0, 1.0, P)
    model = VAE(Constant(raw), fam, Constant(logits), likelihoods.get("bernoulli", (P,))).eval()
    x = torch.bernoulli(torch.full((256, P), 0.5), generator=torch.Generator().manual_seed(1))
    truth = model.head(logits).log_prob(x)  # (N,)
    est, _ = evaluate.log_likelihood(model, x, k=200)
    gap = (est - truth).double()
    assert torch.isfinite(gap).all()
    assert float(gap.mean()) <= 4 * float(gap.std() / math.sqrt(len(gap))), float(gap.mean())
    # K = 1: E[L_1] = log p(x) - KL(q || p), the closed-form KL (a draw's weight is right on average)
    one = (evaluate.log_likelihood(model, x.repeat(8, 1), k=1)[0] - truth.repeat(8)).double()
    kl = float(fam.kl(model.posterior(x[:1]))[0])
    assert abs(float(one.mean()) + kl) < 4 * float(one.std() / math.sqrt(len(one))), (float(one.mean()), -kl)


def confident_relaxed_model(family: str, *options: str) -> VAE:
    """An untrained 6-pixel VAE with a relaxed latent whose encoder is made confident (|logit| ~ 10)."""
    from reparam import config
    from reparam.model import build

    cfg = config.load(None, ["model.hidden=[8]", "latent.dim=4", f"latent.family={family}", *options])
    torch.manual_seed(2)
    model = build(cfg, (P,))
    with torch.no_grad():
        model.encoder.net[-1].weight.mul_(20.0)
    return model.eval()


@pytest.mark.parametrize("family,options", [("bernoulli", []), ("categorical", ["latent.classes=2"])])
def test_discrete_kl_run_reports_elbo_and_likelihood_of_one_model(family, options):
    """latent.kl=discrete: the ELBO and the IS log-likelihood describe the same (discrete) model,
    so log p(x) >= ELBO up to noise; the relaxed-prior model scored before sat far below it."""
    model = confident_relaxed_model(family, "latent.kl=discrete", *options)
    x = torch.bernoulli(torch.full((400, P), 0.4), generator=torch.Generator().manual_seed(3))
    out = evaluate.evaluate(model, x, k=50, dashboard=False)
    assert out["model"] == f"{family}-exact" and set(out["objective"]) >= {"elbo", "log_px_z", "kl"}
    assert -out["nll"] >= out["elbo"] - 4 * out["nll_se"], (out["elbo"], -out["nll"])


def test_relaxed_run_also_reports_the_discrete_model_it_relaxes():
    model = confident_relaxed_model("bernoulli", "latent.kl=relaxed")
    x = torch.bernoulli(torch.full((200, P), 0.4), generator=torch.Generator().manual_seed(3))
    out = evaluate.evaluate(model, x, k=50, dashboard=False)
    assert out["model"] == "bernoulli" and out["discrete"]["model"] == "bernoulli-exact"
    for block in (out, out["discrete"]):
        assert -block["nll"] >= block["elbo"] - 4 * block["nll_se"]


def test_discrete_model_matches_exact_enumeration():
    """The discrete model of a relaxed Bernoulli (4 bits, 16 states) against sums over every state:
    exp(IS estimate) / p(x) has mean 1 and the exact variance Var_q(w) / (K p(x)^2) per example,
    and the mean one-sample ELBO is the exact ELBO, each within 4 standard errors."""
    import itertools

    from reparam import objectives

    model = confident_relaxed_model("bernoulli", "latent.kl=relaxed")
    with torch.no_grad():
        model.encoder.net[-1].weight.mul_(0.1)  # a spread posterior: every state has mass
    discrete = model.with_family(model.family.discrete())
    x = torch.bernoulli(torch.full((64, P), 0.4), generator=torch.Generator().manual_seed(4))
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)))  # (16, 4)
    with torch.no_grad():
        joint = discrete.likelihood(states.unsqueeze(1)).log_prob(x) + discrete.prior().log_prob(states).unsqueeze(1)  # (16, B)
        log_q = discrete.posterior(x).log_prob(states.unsqueeze(1))  # (16, B)
    joint, log_q = joint.double(), log_q.double()
    exact = torch.logsumexp(joint, 0)  # log p(x), (B,)
    k = 500
    est, _ = evaluate.log_likelihood(discrete, x, k=k)
    rel_var = ((2 * joint - log_q).exp().sum(0) / (2 * exact).exp() - 1).clamp_min(0)  # Var_q(w) / p(x)^2
    ratio = (est.double() - exact).exp()
    assert ((ratio - 1).abs() <= 4 * (rel_var / k).sqrt() + 1e-5).all(), (ratio, rel_var)
    exact_elbo = (log_q.exp() * (joint - log_q)).sum(0)  # (B,)
    with torch.inference_mode():
        _, terms = objectives.elbo(discrete, x.repeat(2000, 1))
    one = terms["elbo"].double().unflatten(0, (2000, len(x)))  # (2000, B) one-sample ELBOs
    assert ((one.mean(0) - exact_elbo).abs() <= 4 * one.std(0) / math.sqrt(2000)).all()


# --- one model's blocks for a conditional run ----------------------------------------------------


def conditional_model(family: str, *options: str):
    """An untrained 6-pixel conditional VAE of 3 classes."""
    from reparam import config
    from reparam.model import build

    cfg = config.load(None, ["model.condition=label", "model.hidden=[8]", "latent.dim=4", f"latent.family={family}", *options])
    torch.manual_seed(2)
    return build(cfg, (P,), classes=3).eval()


@pytest.mark.parametrize(
    "family, options, blocks",
    [("gaussian", [], set()), ("bernoulli", ["latent.kl=discrete"], {"objective"}), ("bernoulli", ["latent.kl=relaxed"], {"discrete"})],
)
def test_a_conditional_run_reports_the_blocks_of_its_family(family, options, blocks):
    """A labelled view is a new object at every ``given``: the objective block is the relaxed family's
    with the discrete KL only, and the discrete model is reported for a relaxed KL, as without labels."""
    model = conditional_model(family, *options)
    x = torch.bernoulli(torch.full((30, P), 0.4), generator=torch.Generator().manual_seed(3))
    out = evaluate.evaluate(model, x, 0, dashboard=False, y=torch.arange(30) % 3)
    assert {"objective", "discrete"} & set(out) == blocks


def test_a_conditional_gaussian_run_has_no_relaxed_objective_block(tiny_conditional_run, capsys):
    summary = json.loads((tiny_conditional_run / runs.SUMMARY).read_text())
    assert "objective" not in summary and "discrete" not in summary
    assert main(["eval", str(tiny_conditional_run), "--k", "2"]) == 0
    assert "relaxed sample into the decoder" not in capsys.readouterr().out


# --- repeatable numbers ------------------------------------------------------------------------------


def test_eval_is_repeatable_and_follows_its_seed(tiny_run, capsys):
    """The test ELBO's draws are seeded (--seed, default 0) like the IS estimate's: two calls give
    the same numbers, another seed other ones."""
    outs = []
    for seed in ([], [], ["--seed", "0"], ["--seed", "1"]):
        assert main(["eval", str(tiny_run), "--k", "3", "--json", *seed]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0] == outs[1] == outs[2]
    assert outs[3]["elbo"] != outs[0]["elbo"] and outs[3]["nll"] != outs[0]["nll"]


def test_evaluate_is_repeatable_and_leaves_the_global_rng_alone():
    model, x = linear_gaussian(), torch.randn(40, P, generator=torch.Generator().manual_seed(1))
    state = torch.get_rng_state()
    a, b, c = (evaluate.evaluate(model, x, 4, dashboard=False, seed=s) for s in (5, 5, 6))
    assert a == b and a["elbo"] != c["elbo"]
    assert evaluate.elbo_terms(model, x, seed=5) == evaluate.elbo_terms(model, x, seed=5) == {k: a[k] for k in ("elbo", "log_px_z", "kl")}
    assert torch.equal(state, torch.get_rng_state())



def test_a_collapsed_layer_is_named_in_the_dashboard():
    """A layer whose posterior means do not move with x (here: the upper layer's network zeroed, so
    q(z_2|z_1) is one distribution for every image) is named; a live layer is not."""
    from reparam import config
    from reparam.model import build

    torch.manual_seed(0)
    model = build(config.load(None, ["latent.dim=4", "model.stochastic=[3]", "model.hidden=[32]"]), (8, 8))
    x = data.load(config.DataConfig(name="digits")).test[:200]
    assert diagnostics.collapse(diagnostics.dashboard(model, x, n_queries=50)) == []
    with torch.no_grad():
        for p in model.up.parameters():
            p.zero_()
    lines = diagnostics.collapse(diagnostics.dashboard(model, x, n_queries=50))
    assert lines == ["layer 2 of 2 (3 units) collapsed: no unit is active (Cov_x E_q[z] <= 0.01), so it carries no information about x"]
    one = {"latent_dim": 8, "active_units": 0}
    assert diagnostics.collapse(one) == ["the latent (8 units) collapsed: no unit is active (Cov_x E_q[z] <= 0.01), so it carries no information about x"]
