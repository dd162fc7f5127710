"""train.eval_k: the budgeted final evaluation (its plans, its subset, its summary), 0 and N."""

from __future__ import annotations

import math

import pytest
import torch

from reparam import data, evaluate, runs
from reparam.evaluate import budget
from tests.conftest import TINY
from tests.helpers import in_process

US = 1e-6  # seconds per (image x sample) in the table below


@pytest.mark.parametrize(
    "n_test, seconds, plan",
    [
        (10_000, 100.0, (10_000, 1000)),  # all images, the most samples
        (10_000, 5.0, (10_000, 500)),  # n * k * US fits exactly
        (10_000, 1.5, (10_000, 100)),
        (10_000, 0.5, (5000, 100)),  # then fewer images at K = 100
        (10_000, 0.25, (2000, 100)),
        (10_000, 0.01, (1000, 10)),  # then 1,000 images with fewer samples
        (10_000, 0.0, (1000, 1)),  # nothing fits: the cheapest plan
        (297, 1.0, (297, 1000)),  # a small test set is never subsampled
        (297, 0.01, (297, 20)),
        (1500, 0.1, (1000, 100)),  # only subsets smaller than the test set
    ],
)
def test_the_plan_is_the_first_that_fits(n_test, seconds, plan):
    assert budget.choose(n_test, US, seconds) == plan


def test_subsets_are_fixed_nested_and_sorted():
    small, large = budget.subset(10_000, 1000), budget.subset(10_000, 2000)
    assert len(small) == 1000 and len(set(small.tolist())) == 1000 and torch.equal(small, small.sort().values)
    assert set(small.tolist()) <= set(large.tolist())  # the first n of one permutation: comparable across runs
    assert torch.equal(small, budget.subset(10_000, 1000))
    assert budget.subset(10_000, 10_000) is None and budget.subset(297, 1000) is None


@pytest.fixture(scope="module")
def model_and_test(tiny_run):
    model = runs.load(tiny_run)
    return model, data.load(model.config.data).test


def test_no_time_gives_the_cheapest_plan_described_in_the_summary(model_and_test):
    model, x = model_and_test
    out = evaluate.evaluate(model, x, "auto", budget_seconds=0.0)
    assert (out["k"], out["n"], out["n_test"]) == (1, len(x), len(x))
    plan = out["nll_plan"]
    assert plan["eval_k"] == "auto" and plan["k"] == 1 and plan["full"] == "reparam eval RUN --k 5000"
    assert plan["seconds_per_sample"] > 0 and plan["subset_seed"] is None


def test_ample_time_gives_every_image_the_most_samples(model_and_test):
    model, x = model_and_test
    out = evaluate.evaluate(model, x, "auto", budget_seconds=1e9)
    assert (out["k"], out["n"]) == (1000, len(x))
    exact = evaluate.evaluate(model, x, 1000)  # the same seeded draws as an explicit K
    assert out["nll"] == exact["nll"] and out["nll_se"] == exact["nll_se"]


def test_a_subset_plan_scores_those_images_with_their_standard_error(model_and_test, monkeypatch):
    """With a test set larger than the subsets, the plan's images are the subset's, and its NLL
    and SE are those of log_likelihood on exactly those images."""
    model, x = model_and_test
    big = x.repeat(4, 1, 1)[:1100]  # 1,100 images: the cheapest plan takes 1,000 of them
    out = evaluate.evaluate(model, big, "auto", budget_seconds=0.0, dashboard=False)
    index = budget.subset(len(big), 1000)
    log_px, _ = evaluate.log_likelihood(model, big[index], 1)
    assert (out["n"], out["n_test"], out["nll_plan"]["subset_seed"]) == (1000, 1100, budget.SUBSET_SEED)
    assert out["nll"] == pytest.approx(float(-log_px.double().mean()), rel=1e-12)
    assert out["nll_se"] == pytest.approx(float(log_px.double().std() / math.sqrt(1000)), rel=1e-12)


def test_eval_k_zero_skips_the_log_likelihood(tmp_path, capsys):
    run = tmp_path / "run"
    proc = in_process(capsys, "train", *TINY, "train.eval_k=0", "--out", str(run))
    assert proc.returncode == 0, proc.stderr
    summary = runs.read_json(run / runs.SUMMARY)
    assert summary["nll"] is None and summary["k"] == 0 and "nll_plan" not in summary and math.isfinite(summary["elbo"])
    assert "NLL not estimated (train.eval_k=0)" in proc.stdout


def test_an_explicit_eval_k_is_honoured_on_every_image(tiny_run):
    summary = runs.read_json(tiny_run / runs.SUMMARY)  # tiny_config sets train.eval_k=20
    assert summary["k"] == 20 and summary["n"] == summary["n_test"] == 297 and "nll_plan" not in summary


def test_the_default_is_budgeted_and_the_line_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    args = [a for a in TINY if not a.startswith("train.eval_k")]
    proc = in_process(capsys, "train", *args, "--out", str(run))
    assert proc.returncode == 0, proc.stderr
    summary = runs.read_json(run / runs.SUMMARY)
    assert summary["nll_plan"]["eval_k"] == "auto"
    assert summary["nll_plan"]["budget_seconds"] <= budget.SHARE * summary["train_seconds"]
    assert f"(k={summary['k']}" in proc.stdout and f"reparam eval {run} --k 5000" in proc.stdout

