"""Gradient estimators: unbiasedness against the pathwise gradient, what STL and DReG are
unbiased for, the bound's value unchanged by the estimator, exact discrete latents, bad input.

Statistical checks: for every parameter j, |m_a - m_b| <= Z sqrt(se_a^2 + se_b^2), where m
is the mean of M independent gradient estimates (the lab's ``gradient_stats``) and se its
standard error s_j / sqrt(M). Fixed seeds; Z = 4 as everywhere in the suite. The tiny model
has 70 parameters, so about 0.004 false alarms are expected per comparison.
"""

from __future__ import annotations

import json

import pytest
import torch

from reparam import config, latents, objectives
from reparam.cli import main
from reparam.errors import ConfigError
from reparam.evaluate.gradvar import gradient_stats, groups
from reparam.model import build
from reparam.objectives import baselines, bounds, estimators
from tests.conftest import tiny_config

Z = 4.0
M = 800  # gradient estimates per estimator


@pytest.fixture(autouse=True)
def _one_thread():
    """Thousands of tiny backward passes: one thread avoids contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(*overrides: str):
    """A 6-pixel, 2-latent VAE with one hidden layer of 3 units and a fixed batch of 4."""
    cfg = config.load(None, ["model.hidden=[3]", "latent.dim=2", *overrides])
    torch.manual_seed(3)
    model = build(cfg, (6,))
    x = torch.bernoulli(torch.full((4, 6), 0.4), generator=torch.Generator().manual_seed(5))
    return model, x


def mean_gradient(model, x, objective: str, k: int, spec: str, seed: int = 0, **options) -> dict:
    """Mean and standard error of M gradient estimates of -mean(bound), per parameter group
    (``options``: more keyword arguments of the bound, e.g. free_bits)."""
    estimator, _, baseline = spec.partition(":")
    # an untrained NVIL net or a zero moving average: any fixed b keeps it unbiased
    module = baselines.baseline_module(baseline or "none", model.x_shape)
    fn = objectives.lookup(objective)

    def step():
        model.zero_grad(set_to_none=True)
        bound, _ = fn(model, x, k=k, estimator=estimator, baseline=baseline or "none", baseline_state=module, **options)
        (-bound.mean()).backward()

    torch.manual_seed(seed)
    validate = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)  # speed: checked elsewhere
    try:
        stats = gradient_stats(step, groups(model), M)["groups"]
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
    return {g: (s["mean"], (s["var"] / M).sqrt()) for g, s in stats.items()}


def assert_same_mean(a: dict, b: dict, group_names=("encoder", "decoder")) -> None:
    for g in group_names:
        (ma, sa), (mb, sb) = a[g], b[g]
        z = (ma - mb).abs() / (sa**2 + sb**2).sqrt().clamp_min(1e-12)
        assert float(z.max()) <= Z, f"{g}: {int((z > Z).sum())} of {len(z)} parameters beyond {Z} standard errors"


UNBIASED = [  # (bound, K, estimator spec, reference spec): the same expected gradient
    ("elbo", 1, "score", "pathwise"),
    ("elbo", 1, "score:moving_average", "pathwise"),
    ("elbo", 1, "score:nvil", "pathwise"),
    ("elbo", 3, "score:loo", "pathwise"),
    ("iwae", 3, "score:loo", "iwae"),  # VIMCO
    ("iwae", 3, "score:nvil", "iwae"),
    ("elbo", 2, "stl", "pathwise"),  # STL: the dropped score term has mean 0 for the ELBO
    ("iwae", 3, "dreg", "iwae"),  # DReG: unbiased for grad L_K (encoder and decoder)
    ("iwae", 1, "stl", "iwae"),  # K = 1: L_1 is the ELBO, so STL is unbiased there too
    ("renyi", 3, "score", "pathwise"),  # the Renyi bound (alpha = 0.5) with every score baseline
    ("renyi", 3, "score:loo", "pathwise"),
    ("renyi", 3, "score:nvil", "pathwise"),
    ("renyi", 3, "score:moving_average", "pathwise"),
]
#: Bound options per row of UNBIASED where the default is not the point: alpha = 1 is the ELBO's mean.
UNBIASED_OPTIONS = [("renyi", 2, "stl", "pathwise", {"alpha": 1.0})]


@pytest.mark.parametrize(
    "objective,k,spec,reference,options", [(*row, {}) for row in UNBIASED] + UNBIASED_OPTIONS,
    ids=[f"{o}-k{k}-{s}" for o, k, s, _ in UNBIASED] + [f"{o}-k{k}-{s}-{opt}" for o, k, s, _, opt in UNBIASED_OPTIONS],
)  # fmt: skip
def test_estimator_mean_equals_reference_gradient(objective, k, spec, reference, options):
    """The estimator's mean gradient equals the reference's (pathwise ELBO or plain IWAE)
    within 4 standard errors per parameter: score with every baseline, STL for the ELBO,
    DReG for the IWAE bound L_K (Tucker et al. 2018, eq. 7: sum_k w~_k^2 dlog w_k/dz_k
    dz_k/dphi is unbiased for grad_phi L_K), and the Renyi bound with the same estimators."""
    model, x = tiny_model(f"objective.name={objective}", f"objective.k={k}")
    a = mean_gradient(model, x, objective, k, spec, seed=1, **options)
    b = mean_gradient(model, x, objective, k, reference, seed=2, **options)
    assert_same_mean(a, b)


@pytest.mark.parametrize("free_bits", [5.0, None], ids=["all-below", "mixed"])
def test_stl_keeps_the_free_bits_mask(free_bits):
    """With free bits, STL's mean gradient is that of the floored bound (pathwise on the same
    bound): KL groups below the floor give no gradient in either. At lambda = 5 every group is
    below; "mixed" puts lambda halfway between the tiny model's two dimensions' KLs."""
    model, x = tiny_model()
    with torch.no_grad():
        kl = model.family.kl_per_dim(model.posterior(x)).mean(0)
    if free_bits is None:
        free_bits = float(kl.min() + kl.max()) / 2
        assert float(kl.min()) < free_bits < float(kl.max()), kl
    a = mean_gradient(model, x, "elbo", 2, "stl", seed=1, free_bits=free_bits)
    b = mean_gradient(model, x, "elbo", 2, "pathwise", seed=2, free_bits=free_bits)
    assert_same_mean(a, b)


def test_stl_is_biased_for_iwae_with_k_above_one():
    """The power check of the test above: STL at K = 3 on the IWAE bound misses grad L_K
    (the dropped term sum_k w~_k grad log q(z_k) has nonzero mean; Tucker et al. 2018, sec. 5),
    and the same comparison detects it on the encoder."""
    model, x = tiny_model("objective.name=iwae", "objective.k=3")
    with torch.no_grad():  # a posterior far from the true one makes the bias large
        model.encoder.net[-1].bias.add_(torch.tensor([2.0, -2.0, 1.0, 1.0], ))
    a = mean_gradient(model, x, "iwae", 3, "stl", seed=1)
    b = mean_gradient(model, x, "iwae", 3, "iwae", seed=2)
    with pytest.raises(AssertionError, match="encoder"):
        assert_same_mean(a, b, ("encoder",))


def test_dreg_gradient_is_the_formula_of_tucker_et_al():
    """For one draw, DReG's encoder gradient equals sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d phi)
    computed directly with autograd (log q's parameters held fixed in log w_k), exactly."""
    model, x = tiny_model("objective.name=iwae", "objective.k=3")
    enc = list(model.encoder.parameters())
    torch.manual_seed(0)
    bound, _ = objectives.iwae(model, x, k=3, estimator="dreg")
    got = torch.autograd.grad(-bound.mean(), enc)
    torch.manual_seed(0)
    z = model.posterior(x).rsample((3,))  # (K, B, D), the same draw
    with torch.no_grad():
        q_fixed = model.posterior(x)
    lw = model.likelihood(z).log_prob(x) + model.prior().log_prob(z) - q_fixed.log_prob(z)  # (K, B)
    w = torch.softmax(lw.detach(), 0)
    dz = torch.autograd.grad(lw.sum(), z, retain_graph=True)[0]  # (K, B, D)
    want = torch.autograd.grad(-((w**2).unsqueeze(-1) * dz * z).sum() / len(x), enc)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("spec", ["pathwise", "stl", "score", "score:loo", "score:moving_average", "score:nvil", "dreg", "iwae"])
@pytest.mark.parametrize("objective", ["elbo", "iwae", "renyi"])
def test_estimator_keeps_the_bound_value(objective, spec):
    """The surrogate's value is the bound itself (its terms), whatever the estimator."""
    estimator, _, baseline = spec.partition(":")
    model, x = tiny_model(f"objective.name={objective}", "objective.k=3")
    if not estimators.ESTIMATORS[estimator].applies_to(objectives.BOUNDS[objective].reduction()):
        pytest.skip(f"{estimator} does not apply to {objective}")
    module = baselines.baseline_module(baseline or "none", model.x_shape)
    bound, terms = objectives.lookup(objective)(model, x, k=3, estimator=estimator, baseline=baseline or "none", baseline_state=module)
    assert bound.shape == (4,)
    torch.testing.assert_close(bound.detach(), terms["elbo" if objective == "elbo" else objective])
    (-bound.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())


# --- exact discrete latents -------------------------------------------------------------

EXACT = [("bernoulli-exact", 6, {}), ("categorical-exact", 6, {"classes": 3})]


@pytest.mark.parametrize("family,dim,options", EXACT, ids=[e[0] for e in EXACT])
def test_exact_family_is_discrete_and_its_kl_matches_monte_carlo(family, dim, options):
    fam = latents.get(family, dim, **options)
    q = fam.posterior(torch.randn(5, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    assert not q.has_rsample and not estimators.has_rsample(fam)
    with pytest.raises(NotImplementedError, match="score"):
        q.rsample()
    with torch.no_grad():
        assert q.rsample((3,)).shape == (3, 5, dim)
    z = q.sample((20000,))  # (N, 5, D), in the support
    assert set(z.unique().tolist()) <= {0.0, 1.0}
    mc = q.log_prob(z) - fam.prior().log_prob(z)  # (N, 5)
    kl = fam.kl(q)
    assert bool((kl >= 0).all())
    assert bool(((mc.mean(0) - kl).abs() <= Z * mc.std(0) / len(mc) ** 0.5).all())


@pytest.mark.parametrize("family,extra", [("bernoulli-exact", []), ("categorical-exact", ["latent.classes=4"])])
def test_score_function_trains_an_exact_discrete_latent_on_digits(tmp_path, family, extra):
    """objective.estimator=score on a truly discrete latent lowers the loss on digits."""
    from reparam.train import train

    cfg = tiny_config(f"latent.family={family}", "latent.dim=8", "objective.estimator=score", "train.epochs=4", "train.lr=3e-3", *extra)
    run = train(cfg, tmp_path / "run")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] - 1.0
    assert metrics[-1]["test_elbo"] > metrics[0]["test_elbo"] + 1.0


# --- bad input ----------------------------------------------------------------------------

BAD = [
    (["latent.family=bernoulli-exact", "objective.estimator=pathwise"], "supports: score"),
    (["latent.family=categorical-exact", "objective.estimator=stl"], "supports: score"),
    (["objective.estimator=score", "objective.baseline=loo"], "K > 1"),
    (["objective.name=iwae", "objective.estimator=dreg"], "K > 1"),
    (["objective.estimator=dreg", "objective.k=3"], "objective.name=iwae"),
    (["objective.baseline=nvil"], "objective.estimator=score"),
    (["objective.estimator=reinforce"], "valid: auto, dreg, iwae, pathwise, score, stl"),
    (["objective.estimator=score", "objective.baseline=mean"], "valid: none, moving_average, nvil, loo"),
    (["latent.family=bernoulli", "latent.kl=discrete", "objective.estimator=stl"], "rewrites the KL as E_q"),
    (["latent.family=categorical", "latent.kl=discrete", "objective.name=iwae", "objective.k=2"], "weighs samples by p"),
]


@pytest.mark.parametrize("overrides,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_estimator_settings_are_one_line_and_exit_2(overrides, needle, capsys, tmp_path):
    with pytest.raises(ConfigError, match=needle.replace("+", r"\+")):
        config.load(None, overrides)
    assert main(["train", *overrides, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_bound_without_estimators_keeps_validating(monkeypatch):
    """A registered objective that draws its own z takes the defaults, and refuses an estimator."""

    def custom(model, x, k=1, beta=1.0):
        return objectives.elbo(model, x, k=k, beta=beta)

    monkeypatch.setitem(objectives.OBJECTIVES, "custom", custom)
    assert config.load(None, ["objective.name=custom", "latent.family=bernoulli-exact"]).objective.name == "custom"
    with pytest.raises(ConfigError, match="takes no gradient estimator"):
        config.load(None, ["objective.name=custom", "objective.estimator=score"])


def test_the_estimator_is_checked_once_per_combination_and_refused_every_time(monkeypatch):
    """Training steps with one setting check it once; a setting the bound refuses, built from
    Python past the config's rules, is refused with the same ConfigError at every call."""
    model, x = tiny_model()
    calls, real = [], estimators.check
    monkeypatch.setattr(estimators, "check", lambda *a, **k: calls.append(a) or real(*a, **k))
    bounds._resolved.cache_clear()  # another test may have checked this combination already
    fit = objectives.Objective(config.ObjectiveConfig(name="renyi", k=2, estimator="pathwise", options={"alpha": 0.25}), (6,))
    for step in range(3):
        fit(model, x, step)
    assert len(calls) == 1
    wrong = objectives.Objective(config.ObjectiveConfig(name="elbo", k=3, estimator="dreg"), (6,))
    for step in range(2):
        with pytest.raises(ConfigError, match="objective.estimator=dreg applies to objective.name=iwae"):
            wrong(model, x, step)
    assert len(calls) == 3
