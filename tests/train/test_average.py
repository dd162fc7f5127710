"""train.ema: the moving average of the weights, what it is evaluated and saved as, and resume."""

from __future__ import annotations

import shutil

import pytest
import torch

from reparam import checkpoint, evaluate, optim, runs
from reparam.train import resume, train
from tests.conftest import tiny_config
from tests.helpers import assert_user_error, in_process
from tests.train.test_reliability import assert_bitwise_equal, weights


def test_the_average_follows_its_debiased_recurrence():
    """Against the recurrence in Python floats: a_0 = p_0, a_t = d_t a_(t-1) + (1 - d_t) p_t with
    d_t = min(decay, (1 + t) / (10 + t)), for a float64 parameter that moves every step."""
    p = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    avg = optim.WeightAverage([p], decay=0.9)
    expected = 0.0
    for t in range(1, 120):
        with torch.no_grad():
            p.fill_(float(t) ** 1.5)
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * float(t) ** 1.5
        avg.update()
        assert float(avg.shadow[0]) == pytest.approx(expected, rel=1e-13)
    assert min(0.9, (1 + 119) / (10 + 119)) == 0.9  # the late updates (t >= 80) ran at the full decay


def test_swapped_restores_the_trained_weights_bit_for_bit():
    net = torch.nn.Linear(3, 2)
    avg = optim.WeightAverage(net.parameters(), decay=0.99)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    avg.update()
    trained = [p.detach().clone() for p in net.parameters()]
    with avg.swapped():
        assert all(torch.equal(p, s) for p, s in zip(net.parameters(), avg.shadow))
    assert all(torch.equal(p, t) for p, t in zip(net.parameters(), trained))


def test_a_run_reports_and_saves_the_average(tmp_path):
    """model.safetensors holds the average, not the last step's weights (those stay in the
    checkpoint for resuming), and the summary's and the last evaluation's held-out terms describe
    the saved model."""
    run = train(tiny_config("train.ema=0.9", "train.epochs=3", "train.eval_k=0"), tmp_path / "run")
    saved = runs.load_tensors(run / runs.WEIGHTS)
    state = checkpoint.nest(*checkpoint.latest(run))
    trained = state["model"]
    assert set(saved) == set(trained) and any(not torch.equal(saved[k], trained[k]) for k in saved)
    model = runs.load(run)
    summary, metrics = runs.read_json(run / runs.SUMMARY), runs.read_jsonl(run / runs.METRICS)
    test_x = runs.load_data(run, model.config).test
    kl = evaluate.elbo_terms(model, test_x)["kl"]  # the Gaussian KL is in closed form: no sampling noise
    assert summary["kl"] == pytest.approx(kl, rel=1e-6) and metrics[-1]["test_kl"] == pytest.approx(kl, rel=1e-6)
    model.load_state_dict(trained)
    assert abs(evaluate.elbo_terms(model, test_x)["kl"] - kl) > 1e-3  # the last step's weights score otherwise
    assert state["meta"]["average_updates"] == summary["steps"]


def test_resume_with_an_average_is_bit_for_bit(tmp_path):
    args = ("train.ema=0.95", "train.epochs=4", "train.eval_k=0", "train.report=false")
    whole = train(tiny_config(*args), tmp_path / "whole")
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    step2 = next(m["step"] for m in runs.read_jsonl(whole / runs.METRICS) if m["epoch"] == 2)
    for path in checkpoint.list_checkpoints(cut):
        if int(path.stem.split("-")[1]) > step2:
            path.unlink()
    assert checkpoint.latest(cut)[1]["step"] == step2
    resume(cut)
    assert_bitwise_equal(weights(whole), weights(cut))  # model.safetensors: the averages
    a, b = (checkpoint.nest(*checkpoint.latest(r)) for r in (whole, cut))
    assert all(torch.equal(a["average"][k], b["average"][k]) for k in a["average"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.parametrize("value", ["1", "-0.1", "1.5"])
def test_a_bad_decay_is_one_line_and_exit_2(capsys, tmp_path, value):
    proc = in_process(capsys, "train", f"train.ema={value}", "--out", str(tmp_path / "run"))
    assert_user_error(proc, "train.ema must lie in [0, 1)")
    assert not (tmp_path / "run").exists()
