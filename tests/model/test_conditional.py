"""Conditional VAEs and M2 end to end: labels from every source, the exact marginal of a
linear-Gaussian M2, every family/bound/estimator/architecture given labels, no label leaking
into the unlabelled bound, exact resume, conditional samples a classifier recognises, the
run's commands, and bad input."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reparam import data as data_mod
from reparam import evaluate, latents, likelihoods, objectives, runs
from reparam.errors import ConfigError, DataError
from reparam.model import ConditionalVAE, build
from reparam.objectives import labels
from reparam.train.loop import Trainer
from tests.conftest import tiny_config
from tests.helpers import assert_user_error, in_process

CVAE = ["model.condition=label"]
M2 = ["model.condition=label", "data.labeled=50"]


# --- labels travel with the data ----------------------------------------------------------


def test_labels_come_from_npz_files_and_class_subfolders(tmp_path):
    x = np.random.default_rng(0).random((30, 6, 6))
    y = np.arange(30) % 3
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    d = data_mod.load_arrays(tmp_path / "xy.npz", 0.2)
    assert d.classes == ["0", "1", "2"] and len(d.train_labels) == 24 and len(d.test_labels) == 6
    assert sorted(torch.cat([d.train_labels, d.test_labels]).tolist()) == sorted(y.tolist())
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray((np.full((6, 6), 10 * i + (200 if name == "dog" else 0))).astype(np.uint8)).save(tmp_path / "pets" / name / f"{i}.png")
    d = data_mod.load_folder(tmp_path / "pets", 0.25)
    assert d.classes == ["cat", "dog"]
    both = data_mod.unit(torch.cat([d.train, d.test])), torch.cat([d.train_labels, d.test_labels])  # PNGs held as uint8 levels
    assert all(bool(img.mean() > 0.5) == bool(lab) for img, lab in zip(*both))  # dogs are the brighter ones


def test_a_labelled_subset_is_class_balanced_and_seeded():
    y = torch.arange(200) % 10
    a, b, c = (data_mod.labelled_subset(y, 30, 10, s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.bincount(y[a], minlength=10).tolist() == [3] * 10 and len(set(a.tolist())) == 30


@pytest.mark.parametrize(
    "n,needle", [(35, "not divisible by the 10 classes"), (200, "must be fewer than the 200 training images"), (100, "class 9 has 5 training images")]
)
def test_a_labelled_subset_the_data_cannot_give_is_refused(n, needle):
    y = torch.arange(200) % 10
    y[torch.nonzero(y == 9).flatten()[:15]] = 0  # class 9 keeps 5 images
    with pytest.raises(DataError, match=re.escape(needle)):
        data_mod.labelled_subset(y, n, 10, 0)


# --- the model against exact answers ------------------------------------------------------

X, D, C, S = 4, 2, 3, 0.5


def linear_gaussian_m2() -> ConditionalVAE:
    """x | z, y ~ N(W_z z + W_y y + b, S^2 I), z ~ N(0, I), y uniform: p(x|y) = N(W_y y + b, W_z W_z^T + S^2 I)."""
    torch.manual_seed(0)
    family = latents.get("gaussian", D)
    head = likelihoods.get("gaussian", (X,), scale=S)
    model = ConditionalVAE(nn.Linear(X, family.raw_size), family, nn.Linear(D + C, X), head, C, nn.Linear(X, C))
    with torch.no_grad():
        model.decoder.weight[:, D:] *= 4  # classes well apart
    return model.double().eval()


@torch.no_grad()
def exact_log_px(model: ConditionalVAE, x: torch.Tensor) -> torch.Tensor:
    w, b = model.decoder.weight, model.decoder.bias
    cov = w[:, :D] @ w[:, :D].T + S**2 * torch.eye(X, dtype=torch.float64)
    per_class = torch.stack([torch.distributions.MultivariateNormal(w[:, D + c] + b, cov).log_prob(x) for c in range(C)])
    return torch.logsumexp(per_class, 0) - math.log(C)


def test_m2_log_likelihood_matches_the_exact_marginal_and_sits_below_it():
    """exp of the estimate is unbiased for p(x) (its ratio to p(x) within 4 SE of 1), the log below
    the truth on average, and above the exact U (the bound) on average."""
    model = linear_gaussian_m2()
    x = torch.randn(400, X, dtype=torch.float64) * 2
    truth = exact_log_px(model, x)
    est, ess = evaluate.log_likelihood(model, x, k=20)
    truth = truth.detach()
    ratio = torch.exp(est - truth)
    assert abs(float(ratio.mean()) - 1) < 4 * float(ratio.std()) / math.sqrt(len(x))
    assert float((est - truth).mean()) < 0 and bool((ess >= 1).all())
    u = evaluate.elbo_terms(model, x)["elbo"]
    assert u < float(est.mean())
    closer, _ = evaluate.log_likelihood(model, x, k=500)
    assert float((truth - closer).mean()) < float((truth - est).mean())


def test_a_conditional_vae_given_labels_scores_log_p_x_given_y():
    model = linear_gaussian_m2()
    x = torch.randn(300, X, dtype=torch.float64)
    y = torch.randint(C, (300,))
    w, b = model.decoder.weight, model.decoder.bias
    cov = w[:, :D] @ w[:, :D].T + S**2 * torch.eye(X, dtype=torch.float64)
    truth = torch.distributions.MultivariateNormal(w[:, D:][:, y].T + b, cov).log_prob(x).detach()
    est, _ = evaluate.log_likelihood(model.given(y), x, k=20)
    ratio = torch.exp(est - truth)
    assert abs(float(ratio.mean()) - 1) < 4 * float(ratio.std()) / math.sqrt(len(x))


def test_the_label_prior_is_a_gaussian_per_class_and_their_mixture_without_a_label():
    from scipy import stats

    model = build(tiny_config(*CVAE, "prior.name=label"), (8, 8), classes=3).double()
    with torch.no_grad():
        model.prior_model.loc.copy_(torch.randn(3, 4, dtype=torch.float64))
        model.prior_model.raw_scale.copy_(torch.randn(3, 4, dtype=torch.float64))
    z = torch.randn(5, 4, dtype=torch.float64)
    loc = model.prior_model.loc.detach()
    scale = model.prior_model.distribution(model.family, None, torch.eye(3, dtype=torch.float64)).base_dist.scale.detach()
    for c in range(3):
        want = stats.norm(loc[c].numpy(), scale[c].numpy()).logpdf(z.numpy()).sum(-1)
        np.testing.assert_allclose(model.given(torch.tensor(c)).prior().log_prob(z).detach().numpy(), want, rtol=1e-10)
    mixture = np.log(np.mean([np.exp(stats.norm(loc[c].numpy(), scale[c].numpy()).logpdf(z.numpy()).sum(-1)) for c in range(3)], 0))
    np.testing.assert_allclose(model.prior().log_prob(z).detach().numpy(), mixture, rtol=1e-10)
    q = model.given(torch.tensor([1, 2])).posterior(torch.rand(2, 8, 8, dtype=torch.float64))
    kl = model.given(torch.tensor([1, 2])).kl(q)  # closed form; against Monte Carlo
    zs = q.sample((200000,))
    ratio = (q.log_prob(zs) - model.given(torch.tensor([1, 2])).prior().log_prob(zs)).detach()
    se = ratio.std(0) / math.sqrt(len(zs))
    assert bool(((kl.detach() - ratio.mean(0)).abs() < 4 * se).all()), (kl, ratio.mean(0), se)


# --- every component given labels -----------------------------------------------------------

COMBOS = [
    [],
    ["latent.family=bernoulli", "latent.dim=6"],
    ["latent.family=categorical", "latent.classes=3", "latent.dim=6", "latent.kl=relaxed"],
    ["latent.family=dirichlet"],
    ["latent.family=spherical"],
    ["latent.family=beta"],
    ["latent.family=bernoulli-exact", "objective.estimator=score", "objective.baseline=nvil"],
    ["objective.name=iwae", "objective.k=3", "objective.estimator=dreg"],
    ["objective.estimator=stl"],
    ["objective.name=renyi", "objective.k=2", "objective.alpha=0.3"],
    ["objective.free_bits=0.1"],
    ["likelihood.name=gaussian", "data.binarize=none"],
    ["likelihood.name=discretized_logistic", "data.binarize=none"],
    ["likelihood.name=continuous_bernoulli", "data.binarize=none"],
    ["model.arch=conv", "model.channels=[4]"],
    ["latent.flow=iaf", "latent.flow_steps=2"],
    ["prior.name=label"],
    ["prior.name=vamp", "prior.components=4"],
]


@pytest.mark.parametrize("opts", COMBOS, ids=[" ".join(c) or "defaults" for c in COMBOS])
@pytest.mark.parametrize("semi", [False, True], ids=["cvae", "m2"])
def test_every_family_bound_estimator_and_network_trains_given_labels(opts, semi):
    cfg = tiny_config(*(M2 if semi else CVAE), *opts)
    model = build(cfg, (8, 8), classes=4)
    objective = objectives.Objective(cfg.objective, (8, 8))
    x = torch.rand(6, 8, 8)
    x = x if cfg.data.binarize == "none" else x.bernoulli()
    y = torch.randint(4, (6,))
    batch = labels.SemiSupervised(x, x[:3], y[:3], 0.9, 0.1) if semi else labels.Labelled(x, y)
    bound, terms = objective(model, batch)
    (-bound.mean()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(bound).all() and grads and all(torch.isfinite(g).all() for g in grads)
    assert model.label_in.weight.grad is not None and float(model.label_in.weight.grad.abs().sum()) > 0
    if semi:
        assert any(float(p.grad.abs().sum()) > 0 for p in model.classifier.parameters())


# --- training ----------------------------------------------------------------------------------


def fit(cfg, data: data_mod.Data, run_dir) -> dict[str, torch.Tensor]:
    torch.manual_seed(cfg.seed)
    model = build(cfg, data.x_shape, classes=len(data.classes))
    run_dir.mkdir()
    trainer = Trainer(cfg, model, data, run_dir)
    trainer.fit(progress=False)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("how", ["exact", "relaxed", "score"])
def test_unlabelled_images_labels_never_reach_the_objective(how, tmp_path, monkeypatch):
    """With the labelled subset held fixed (choosing a class-balanced one reads every label, as
    Kingma et al.'s split does), shuffling the labels of the unlabelled images leaves training
    bit for bit the same; changing one labelled image's label does not (so the test can fail)."""
    cfg = tiny_config(*M2, "train.epochs=1", f"objective.labels={how}")
    base = data_mod.load(cfg.data)
    keep = data_mod.labelled_subset(base.train_labels, 50, 10, cfg.seed)
    monkeypatch.setattr(data_mod, "labelled_subset", lambda *args: keep)
    hidden = torch.ones(len(base.train_labels), dtype=torch.bool)
    hidden[keep] = False
    shuffled = data_mod.load(cfg.data)
    rest = shuffled.train_labels[hidden]
    shuffled.train_labels[hidden] = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(5))]
    assert not torch.equal(shuffled.train_labels, base.train_labels)
    changed = data_mod.load(cfg.data)
    changed.train_labels[keep[0]] = (changed.train_labels[keep[0]] + 1) % 10
    a, b, c = fit(cfg, base, tmp_path / "a"), fit(cfg, shuffled, tmp_path / "b"), fit(cfg, changed, tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("opts", [CVAE, [*M2, "objective.labels=score", "objective.label_baseline=nvil", "train.labeled_batch_size=7"]], ids=["cvae", "m2"])
def test_a_labelled_run_resumes_bit_for_bit(opts, tmp_path):
    from reparam.train import resume, train

    whole = train(tiny_config(*opts, "train.epochs=2"), tmp_path / "whole")
    half = train(tiny_config(*opts, "train.epochs=1"), tmp_path / "half")
    resume(half, epochs=2, progress=False)
    a, b = runs.load_tensors(whole / runs.WEIGHTS), runs.load_tensors(half / runs.WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((whole / runs.SUMMARY).read_text())
    assert -summary["nll"] >= summary["elbo"] - 4 * summary["nll_se"]


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    from reparam.train import train

    cfg = tiny_config(*CVAE, "train.epochs=30", "model.hidden=[64]", "latent.dim=4", "train.report=true", "train.eval_k=50")
    return train(cfg, tmp_path_factory.mktemp("cvae") / "run")


def test_conditional_samples_are_recognised_as_their_class(cvae_run):
    """A classifier of the digits (logistic regression on the training images) names the class of
    p(x|z, y) samples far above chance (10%)."""
    from sklearn.linear_model import LogisticRegression

    from reparam.report.pictures import class_samples

    model = runs.load(cvae_run)
    d = data_mod.load(model.config.data)
    clf = LogisticRegression(max_iter=2000).fit(d.train.flatten(1).numpy(), d.train_labels.numpy())
    with torch.inference_mode():
        images = class_samples(model, 30, seed=0)  # (10 x 30, 8, 8), class after class
    accuracy = float((clf.predict(images.flatten(1).numpy()) == np.repeat(np.arange(10), 30)).mean())
    assert accuracy > 0.6, accuracy


def test_a_conditional_run_reports_samples_per_class_and_its_label(cvae_run, capsys, tmp_path):
    summary = json.loads((cvae_run / runs.SUMMARY).read_text())
    assert summary["labels"].startswith("given") and "classification_error" not in summary
    assert json.loads((cvae_run / runs.CLASSES).read_text())["classes"] == [str(c) for c in range(10)]
    assert (cvae_run / "figures" / "class_samples.png").is_file()
    out = in_process(capsys, "report", str(cvae_run), "--label", "7", "--out", str(tmp_path / "r.html"))
    assert out.returncode == 0 and "given class 7" in (tmp_path / "r.html").read_text()
    out = in_process(capsys, "sample", str(cvae_run), "--label", "3", "--n", "5", "--out", str(tmp_path / "s.png"))
    assert out.returncode == 0 and Image.open(tmp_path / "s.png").size[0] > 0
    out = in_process(capsys, "eval", str(cvae_run), "--k", "5")
    assert out.returncode == 0 and "given: -log p(x|y)" in out.stdout


def test_the_readme_label_commands_run(cvae_run, tmp_path, capsys, monkeypatch):
    """Every command of the README's Labels section, RUN being a conditional run (train commands
    get the tiny settings), run in this process (the README's own test runs each through the interpreter)."""
    import shlex

    from tests.conftest import TINY
    from tests.test_readme import ROOT, blocks, section

    monkeypatch.chdir(ROOT)

    lines = [line.split("#")[0].strip() for b in blocks("bash", section("Labels: conditional and semi-supervised VAEs")) for line in b.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("reparam ")]
    assert len(commands) >= 5 and any("--label" in c for c in commands)
    for i, argv in enumerate(commands):
        argv = [str(cvae_run) if a == "RUN" else a for a in argv]
        if argv[0] == "train":
            argv += [*TINY, "--out", str(tmp_path / f"run{i}")]
        if "--out" in argv and argv[0] == "sample":
            argv[argv.index("--out") + 1] = str(tmp_path / "sevens.png")
        if argv[0] == "report":
            argv += ["--out", str(tmp_path / "report.html")]
        proc = in_process(capsys, *argv)
        assert proc.returncode == 0, (argv, proc.stderr)


def test_the_explorer_decodes_given_a_class_and_refuses_a_bad_one(cvae_run):
    from reparam.explore.server import api
    from reparam.explore.session import BadRequest, Explorer

    ex = Explorer.open(cvae_run)
    assert ex.meta()["classes"] == [str(c) for c in range(10)]
    z = ",".join(["0"] * 4)
    a, _ = api(ex, "/api/decode.png", {"z": [z], "label": ["1"]})
    b, _ = api(ex, "/api/decode.png", {"z": [z], "label": ["8"]})
    assert a != b
    for bad in ("10", "-1", "x"):
        with pytest.raises(BadRequest, match="label must be an integer in"):
            api(ex, "/api/samples.png", {"n": ["2"], "label": [bad]})


def test_an_m2_run_reports_its_classification_error(tmp_path, capsys):
    out = in_process(capsys, "train", *tiny_config_args(*M2), "--out", str(tmp_path / "m2"))
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "m2" / runs.SUMMARY).read_text())
    assert 0 <= summary["classification_error"] <= 1 and summary["labels"].startswith("latent")
    assert "classification error" in out.stdout
    metrics = runs.read_jsonl(tmp_path / "m2" / runs.METRICS)
    assert "test_classification_error" in metrics[-1]


def tiny_config_args(*extra: str) -> list[str]:
    from tests.conftest import TINY

    return [*TINY, *extra]


# --- bad input -----------------------------------------------------------------------------------

BAD_CONFIG = [
    (["data.labeled=100"], "data.labeled trains the semi-supervised M2 model"),
    (["prior.name=label"], "prior.name=label is p(z|y)"),
    (["model.condition=labels"], "model.condition"),
    ([*CVAE, "objective.labels=relaxed"], "applies to semi-supervised training"),
    ([*M2, "objective.labels=guess"], "objective.labels"),
    ([*M2, "objective.label_temperature=0.3"], "objective.label_temperature applies to objective.labels=relaxed"),
    ([*M2, "objective.label_weight=-1"], "objective.label_weight must be"),
    ([*CVAE, "model.stochastic=[4]"], "applies to a one-layer model"),
    ([*CVAE, "prior.name=label", "prior.components=3"], "one component per class"),
]


@pytest.mark.parametrize("opts,needle", BAD_CONFIG, ids=[b[1][:40] for b in BAD_CONFIG])
def test_bad_label_settings_are_one_line(opts, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        tiny_config(*opts)


def test_bad_label_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, tiny_run):
    np.savez(tmp_path / "nolabels.npz", x_train=np.random.rand(20, 4, 4), x_test=np.random.rand(5, 4, 4))
    np.savez(tmp_path / "short.npz", x_train=np.random.rand(20, 4, 4), x_test=np.random.rand(5, 4, 4), y_train=np.zeros(19), y_test=np.zeros(5))
    np.savez(tmp_path / "negative.npz", x=np.random.rand(20, 4, 4), y=np.arange(20) - 1)
    cases = [
        ([*CVAE, f"data.path={tmp_path / 'nolabels.npz'}"], "needs labels"),
        ([*CVAE, f"data.path={tmp_path / 'short.npz'}"], "expected one label per image"),
        ([*CVAE, f"data.path={tmp_path / 'negative.npz'}"], "labels must be integers 0..C-1"),
        (["data.labeled=1500", *CVAE], "must be fewer than the 1500 training images"),
        (["data.labeled=55", *CVAE], "not divisible by the 10 classes"),
        ([*M2, "train.labeled_batch_size=60"], "more than the 50 labelled images"),
    ]
    for opts, needle in cases:
        out = tmp_path / "run"
        assert_user_error(in_process(capsys, "train", *tiny_config_args(*opts), "--out", str(out)), needle)
        assert not out.exists()
    assert_user_error(in_process(capsys, "sample", str(tiny_run), "--label", "3"), "--label applies to a conditional run")
    assert_user_error(in_process(capsys, "report", str(tiny_run), "--label", "3"), "--label applies to a conditional run")


def test_a_budgeted_evaluation_scores_a_conditional_subset_given_its_own_labels(monkeypatch):
    """train.eval_k=auto may score a subset of the test images: a conditional VAE's -log p(x|y)
    there is given each image's own label (the subset's rows of y, not the first rows)."""
    from reparam.evaluate import budget

    cfg = tiny_config(*CVAE)
    d = data_mod.load(cfg.data)
    model = build(cfg, d.x_shape, classes=10).eval()
    x, y = d.test.repeat(6, *[1] * (d.test.dim() - 1)), d.test_labels.repeat(6)
    n = len(x) // 2
    monkeypatch.setattr(budget, "choose", lambda n_test, per, seconds: (n, 3))
    out = evaluate.evaluate(model, x, "auto", dashboard=False, y=y, budget_seconds=1.0)
    idx = budget.subset(len(x), n)
    assert out["n"] == n and out["nll_plan"]["n"] == n and out["k"] == 3
    log_px, _ = evaluate.log_likelihood(model.given(y[idx]), x[idx], 3)
    assert out["nll"] == pytest.approx(-float(log_px.double().mean()), rel=1e-6)
    first, _ = evaluate.log_likelihood(model.given(y[:n]), x[idx], 3)  # the labels of other images
    assert abs(float(first.double().mean() - log_px.double().mean())) > 1e-3
