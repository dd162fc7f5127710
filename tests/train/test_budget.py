"""train.budget: durations, a run that stops at its budget, the schedule over the budget, resume.

A fake clock stands in for time: it moves by DT at every training step and nowhere else,
so where a run stops is exact and a resumed run can be compared bit for bit.
"""

from __future__ import annotations

import math
import shutil

import pytest

from reparam import checkpoint, objectives, optim, runs
from reparam.config import duration_seconds
from reparam.errors import ConfigError
from reparam.train import loop, parts, resume, train
from tests.conftest import tiny_config
from tests.helpers import assert_user_error, in_process
from tests.train.test_reliability import assert_bitwise_equal, weights

DT, STEPS = 0.125, 50  # seconds per step, steps in the budget: both exact in binary and at 3 decimals
BUDGET = DT * STEPS  # 6.25 s; digits: 15 steps per epoch, so the budget ends inside epoch 4
LR, FINAL = 3e-3, 1e-4
ARGS = [f"train.budget={BUDGET}", "train.epochs=100", "train.lr_schedule=cosine", f"train.lr={LR}", f"train.lr_final={FINAL}",
        "train.checkpoint_every=10", "train.keep_checkpoints=10", "train.threads=1"]  # fmt: skip


@pytest.mark.parametrize(
    "text, seconds",
    [(0, 0.0), (90, 90.0), (2.5, 2.5), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0), ("1.5h", 5400.0), (" 2 m ", 120.0), ("0.5", 0.5)],
)
def test_durations_parse(text, seconds):
    assert duration_seconds(text, "train.budget") == seconds


@pytest.mark.parametrize("text", ["15x", "-3", "m", "1h30m", "", "inf", "nan", True])
def test_bad_durations_name_the_key_and_the_forms(text):
    with pytest.raises(ConfigError) as e:
        duration_seconds(text, "train.budget")
    assert "train.budget" in str(e.value) and "\n" not in str(e.value)


def test_a_bad_budget_is_one_line_and_exit_2(capsys, tmp_path):
    proc = in_process(capsys, "train", "train.budget=15 minutes", "--out", str(tmp_path / "run"))
    assert_user_error(proc, "train.budget must be a duration such as 90s, 15m or 1h")
    assert not (tmp_path / "run").exists()


def test_progress_takes_the_larger_of_steps_and_time():
    assert optim.progress(10, 100) == 0.1
    assert optim.progress(10, 100, seconds=30, budget=60) == 0.5
    assert optim.progress(80, 100, seconds=30, budget=60) == 0.8
    assert optim.progress(10, 100, seconds=90, budget=60) == 1.0  # past the budget: the end of the schedule
    assert optim.progress(10, 100, seconds=90, budget=0) == 0.1  # no budget: time does not count


@pytest.fixture
def fake_clock(monkeypatch) -> list[tuple[float, float]]:
    """Time moves by DT per training step; returns the (clock, rate) seen at the start of each step."""
    now = [0.0]
    seen: list[tuple[float, float]] = []
    real_advance = loop.Trainer.advance

    def advance(self):
        seen.append((self.clock.seconds, self.opt.param_groups[0]["lr"]))
        now[0] += DT
        real_advance(self)

    monkeypatch.setattr(parts, "clock", lambda: now[0])
    monkeypatch.setattr(loop.Trainer, "advance", advance)
    return seen


def test_a_run_stops_at_its_budget_and_states_its_passes(tmp_path, fake_clock):
    run = train(tiny_config(*ARGS), tmp_path / "run")
    summary = runs.read_json(run / runs.SUMMARY)
    assert summary["steps"] == STEPS and summary["stopped_by"] == "budget" and summary["budget_seconds"] == BUDGET
    assert summary["epochs"] == STEPS // 15 and summary["passes"] == round(STEPS * 100 / 1500, 3)
    assert summary["train_seconds"] >= BUDGET
    metrics = runs.read_jsonl(run / runs.METRICS)
    assert metrics[-1]["step"] == STEPS and checkpoint.latest(run)[1]["step"] == STEPS  # evaluated and saved where it stopped
    assert checkpoint.latest(run)[1]["param_groups"][0]["lr"] == pytest.approx(FINAL, rel=1e-9)  # the schedule's end


def test_the_schedule_follows_the_budget_not_the_epochs(tmp_path, fake_clock):
    train(tiny_config(*ARGS), tmp_path / "run")
    assert len(fake_clock) == STEPS
    for seconds, lr in fake_clock:  # 100 epochs would barely have begun: the clock sets the rate
        assert lr == pytest.approx(optim.cosine(LR, FINAL, seconds / BUDGET), rel=1e-9)
    assert fake_clock[-1][1] < LR / 10


def test_epochs_still_end_a_run_inside_its_budget(tmp_path, fake_clock):
    run = train(tiny_config(*ARGS, "train.epochs=2"), tmp_path / "run")
    summary = runs.read_json(run / runs.SUMMARY)
    assert summary["steps"] == 30 and summary["stopped_by"] == "epochs"


def test_a_warmup_share_is_laid_over_the_budget(tmp_path, fake_clock, monkeypatch):
    """objective.warmup=40%: the KL weight reaches beta 40% of the way through the budget, read
    from the same clock as the rate, whatever the number of steps that takes."""
    seen = []
    real = objectives.Objective.forward

    def forward(self, model, batch, step=0, batch_mean=None, progress=None):
        if not batch.is_meta:  # the memory estimate's step, on the meta device, is no training step
            seen.append((step, progress, objectives.beta_at(self.cfg, step, progress)))
        return real(self, model, batch, step, batch_mean, progress)

    monkeypatch.setattr(objectives.Objective, "forward", forward)
    train(tiny_config(*ARGS, "objective.warmup=40%", "objective.beta=2"), tmp_path / "run")
    assert len(seen) == len(fake_clock) == STEPS
    for i, ((step, progress, beta), (seconds, _)) in enumerate(zip(seen, fake_clock)):
        assert step == i
        assert progress == pytest.approx(seconds / BUDGET, rel=1e-12)  # 100 epochs of steps: the clock leads
        assert beta == pytest.approx(2 * min(1.0, seconds / (0.4 * BUDGET)), rel=1e-12)
    betas = [b for _, _, b in seen]
    assert betas[0] == 0 and betas[STEPS * 2 // 10] == pytest.approx(1.0) and betas[STEPS // 2 :] == [2.0] * (STEPS - STEPS // 2)


@pytest.mark.parametrize("extra", [[], ["objective.warmup=40%"]], ids=["", "warmup-share"])
def test_resume_continues_the_budget_bit_for_bit(tmp_path, fake_clock, extra):
    """The training clock is part of the state: a run cut at step 20 and resumed stops at the
    same step, with the same rates (and KL weights), as the run that never stopped."""
    whole = train(tiny_config(*ARGS, *extra), tmp_path / "whole")
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    for path in checkpoint.list_checkpoints(cut):
        if int(path.stem.split("-")[1]) > 20:
            path.unlink()
    resume(cut)
    assert runs.read_json(cut / runs.SUMMARY)["steps"] == STEPS
    assert_bitwise_equal(weights(whole), weights(cut))


def test_resume_with_a_longer_budget_trains_on(tmp_path, fake_clock, capsys):
    run = train(tiny_config(*ARGS), tmp_path / "run")
    proc = in_process(capsys, "train", "--resume", str(run), f"train.budget={BUDGET + 10 * DT}", "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = runs.read_json(run / runs.SUMMARY)
    assert summary["steps"] == STEPS + 10 and runs.read_json(run / runs.CONFIG)["train"]["budget"] == BUDGET + 10 * DT
    assert "passes" in proc.stdout and not math.isnan(summary["elbo"])


def test_resume_refuses_other_overrides(capsys, tiny_run):
    proc = in_process(capsys, "train", "--resume", str(tiny_run), "train.lr=1")
    assert_user_error(proc, "--resume takes only train.epochs=N and train.budget=T")

