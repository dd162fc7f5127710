"""Learning-rate schedules: closed forms, the rate a run ends at, resume bit for bit, bad values."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from reparam import checkpoint, optim, runs
from reparam.config import TrainConfig
from reparam.train import resume, train
from tests.conftest import TINY, tiny_config
from tests.helpers import assert_user_error, in_process
from tests.train.test_reliability import assert_bitwise_equal, weights

LR, FINAL = 3e-3, 1e-4
COSINE = ["train.lr_schedule=cosine", f"train.lr={LR}", f"train.lr_final={FINAL}"]

EXACT = [  # (schedule, t, closed form at t)
    ("constant", 0.0, LR),
    ("constant", 0.5, LR),
    ("constant", 1.0, LR),
    ("cosine", 0.0, LR),
    ("cosine", 0.5, (LR + FINAL) / 2),
    ("cosine", 1.0, FINAL),
    ("exponential", 0.0, LR),
    ("exponential", 0.5, math.sqrt(LR * FINAL)),
    ("exponential", 1.0, FINAL),
]


def cosine_at(step: int, total: int) -> float:
    return FINAL + (LR - FINAL) * 0.5 * (1 + math.cos(math.pi * step / total))


def untimed_metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "seconds"} for m in runs.read_jsonl(run / runs.METRICS)]


def last_lr(run: Path) -> float:
    """The rate the optimizer holds in the run's newest checkpoint."""
    return checkpoint.latest(run)[1]["param_groups"][0]["lr"]


@pytest.mark.parametrize("name, t, expected", EXACT)
def test_schedule_values_match_the_closed_forms(name, t, expected):
    assert optim.SCHEDULES[name](LR, FINAL, t) == pytest.approx(expected, rel=1e-12, abs=0)
    cfg = TrainConfig(lr=LR, lr_schedule=name, lr_final=0.0 if name == "constant" else FINAL, lr_backoff=0.5)
    cfg.validate()
    assert optim.lr_at(cfg, round(t * 200), 200) == pytest.approx(expected, rel=1e-12, abs=0)
    assert optim.lr_at(cfg, round(t * 200), 200, rollbacks=2) == pytest.approx(expected * 0.25, rel=1e-12, abs=0)


@pytest.mark.parametrize("name", ["cosine", "exponential"])
def test_progress_is_clamped_to_the_schedule(name):
    cfg = TrainConfig(lr=LR, lr_schedule=name, lr_final=FINAL)
    assert optim.lr_at(cfg, 300, 200) == optim.lr_at(cfg, 200, 200)
    assert optim.lr_at(cfg, -5, 200) == optim.lr_at(cfg, 0, 200) == LR


@pytest.fixture(scope="module")
def cosine_run(tmp_path_factory) -> Path:
    """Three tiny epochs of cosine decay, a checkpoint every 4 steps, all of them kept."""
    out = tmp_path_factory.mktemp("cosine") / "run"
    return train(tiny_config(*COSINE, "train.epochs=3", "train.checkpoint_every=4", "train.keep_checkpoints=1000"), out)


def test_a_cosine_run_ends_at_lr_final_and_logs_its_rate(cosine_run):
    metrics = runs.read_jsonl(cosine_run / runs.METRICS)
    total = metrics[-1]["step"]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    for m in metrics:
        assert m["lr"] == pytest.approx(cosine_at(m["step"], total), rel=1e-12)
    assert metrics[-1]["lr"] == pytest.approx(FINAL, rel=1e-12)
    assert last_lr(cosine_run) == pytest.approx(FINAL, rel=1e-12)


def test_resume_from_a_mid_run_checkpoint_is_bitwise_identical(cosine_run, tmp_path):
    """Cut the run back to a checkpoint inside epoch 2 and resume: same weights, metrics and rate."""
    per_epoch = runs.read_jsonl(cosine_run / runs.METRICS)[0]["step"]
    steps = [int(p.stem.split("-")[1]) for p in checkpoint.list_checkpoints(cosine_run)]
    mid = next(s for s in steps if s > per_epoch and s % per_epoch)
    cut = shutil.copytree(cosine_run, tmp_path / "cut")
    for path in checkpoint.list_checkpoints(cut):
        if int(path.stem.split("-")[1]) > mid:
            path.unlink()
    for name in (runs.WEIGHTS, runs.SUMMARY):
        (cut / name).unlink()
    assert checkpoint.latest(cut)[1]["step"] == mid
    resume(cut, progress=False)
    assert_bitwise_equal(weights(cosine_run), weights(cut))
    assert untimed_metrics(cut) == untimed_metrics(cosine_run)
    assert last_lr(cut) == last_lr(cosine_run)


def test_resume_with_more_epochs_stretches_the_schedule(cosine_run, tmp_path):
    """3 epochs done at lr_final; resumed to 4, the rate restarts at its value at 3/4 and decays again."""
    run = shutil.copytree(cosine_run, tmp_path / "longer")
    (run / runs.SUMMARY).unlink()
    done = checkpoint.latest(run)[1]["step"]
    resume(run, epochs=4, progress=False)
    metrics = runs.read_jsonl(run / runs.METRICS)
    total = metrics[-1]["step"]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4] and total == 4 * metrics[0]["step"]
    assert metrics[-2]["lr"] == metrics[-1]["lr"] == pytest.approx(FINAL, rel=1e-12)  # the end of each schedule
    first_new = next(p for p in checkpoint.list_checkpoints(run) if int(p.stem.split("-")[1]) > done)
    step = int(first_new.stem.split("-")[1])
    assert checkpoint.read(first_new)[1]["param_groups"][0]["lr"] == pytest.approx(cosine_at(step, total), rel=1e-12)
    assert last_lr(run) == pytest.approx(FINAL, rel=1e-12)


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.lr_schedule=linear", "train.lr_schedule must be one of constant, cosine, exponential"),
        ("train.lr_final=-1", "train.lr_final must be a finite rate >= 0"),
        ("train.lr_final=inf", "train.lr_final must be a finite rate >= 0"),
        ("train.lr_schedule=exponential", "train.lr_final must be > 0 for train.lr_schedule=exponential"),
        ("train.lr_final=1e-4", "train.lr_final applies to train.lr_schedule=cosine or exponential"),
    ],
)
def test_bad_schedule_values_are_one_line_and_exit_2(override, needle, tmp_path, capsys):
    out = tmp_path / "r"
    assert_user_error(in_process(capsys, "train", *TINY, override, "--out", str(out)), needle)
    assert not out.exists()
