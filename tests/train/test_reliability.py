"""Crash safety: SIGKILL and resume bit for bit, SIGTERM checkpoints, non-finite steps."""

from __future__ import annotations

import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reparam import checkpoint, data, objectives, runs
from reparam.train import Diverged, train
from tests.conftest import tiny_config

# Small enough to run several times; checkpoints every 4 steps so kills land mid-epoch.
# 12 epochs of 24 steps: 288 steps, 72 checkpoints.
ARGS = ["train.epochs=12", "train.eval_k=20", "train.progress=false", "model.hidden=[32]", "latent.dim=4",
        "train.checkpoint_every=4", "train.threads=1", "train.batch_size=64", "train.report=false"]
TOTAL_STEPS = 12 * 24


def launch(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reparam", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return runs.load_tensors(run / runs.WEIGHTS)


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = subprocess.run([sys.executable, "-m", "reparam", "train", *ARGS, "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def newest_step(run: Path) -> int:
    found = checkpoint.list_checkpoints(run)
    return int(found[-1].stem.split("-")[1]) if found else -1


def kill_at_step(proc: subprocess.Popen, run: Path, target: int, jitter: float) -> bool:
    """SIGKILL ``proc`` once its newest checkpoint reaches ``target`` (plus ``jitter`` s, so the
    kill lands between checkpoints, mid-write or mid-step); False if it finished first."""
    deadline = time.monotonic() + 300
    while newest_step(run) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(jitter)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def test_sigkill_at_random_points_then_resume_is_bitwise_identical(reference, tmp_path):
    rng = random.Random(1234)
    targets = sorted(rng.sample(range(4, TOTAL_STEPS // 2), 3))  # three kills, then a run to the end
    run = tmp_path / "run"
    kills = 0
    proc = launch("train", *ARGS, "--out", str(run))
    for target in targets:
        kills += kill_at_step(proc, run, target, rng.uniform(0.0, 0.01))
        if proc.returncode == 0:
            break
        proc = launch("train", "--resume", str(run), "--quiet")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert kills >= 2, f"only {kills} of the kills landed before the run ended"
    assert_bitwise_equal(weights(reference), weights(run))
    ref_metrics = [{k: v for k, v in m.items() if k != "seconds"} for m in runs.read_jsonl(reference / runs.METRICS)]
    got_metrics = [{k: v for k, v in m.items() if k != "seconds"} for m in runs.read_jsonl(run / runs.METRICS)]
    assert got_metrics == ref_metrics


def test_sigterm_checkpoints_and_says_how_to_resume(reference, tmp_path):
    run = tmp_path / "run"
    proc = launch("train", *ARGS, "--out", str(run))
    while newest_step(run) < 8 and proc.poll() is None:
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived")
    assert proc.returncode == 128 + signal.SIGTERM
    assert f"reparam train --resume {run}" in err and "Traceback" not in err
    done = subprocess.run([sys.executable, "-m", "reparam", "train", "--resume", str(run), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_bitwise_equal(weights(reference), weights(run))


def all_checkpoints_finite(run: Path) -> bool:
    files = checkpoint.list_checkpoints(run)
    return bool(files) and all(
        all(torch.isfinite(t).all() for t in checkpoint.read(f)[0].values() if t.is_floating_point()) for f in files
    )


def test_a_nan_batch_is_skipped_and_counted(tmp_path, monkeypatch):
    real_load = data.load

    def with_nan(cfg):
        d = real_load(cfg)
        d.train[7] = float("nan")
        return d

    monkeypatch.setattr(data, "load", with_nan)
    cfg = tiny_config("train.epochs=3", "data.binarize=none")
    run = train(cfg, tmp_path / "run")
    summary = runs.read_json(run / runs.SUMMARY)
    assert summary["skipped_steps"] == 3 and summary["rollbacks"] == 0  # one bad batch per epoch
    assert math.isfinite(summary["nll"]) and all_checkpoints_finite(run)


def blow_up_above(limit: float):
    """An ELBO that turns NaN once any weight exceeds ``limit``, as a diverging run does."""
    elbo = objectives.OBJECTIVES["elbo"]

    def objective(model, x, **kwargs):
        bound, terms = elbo(model, x, **kwargs)
        too_big = max(float(p.detach().abs().max()) for p in model.parameters()) > limit
        return (bound * math.nan if too_big else bound), terms

    return objective


def test_divergence_rolls_back_with_lower_rate_and_recovers(tmp_path, monkeypatch):
    monkeypatch.setitem(objectives.OBJECTIVES, "elbo", blow_up_above(20.0))
    cfg = tiny_config("train.lr=20", "train.lr_backoff=0.1", "train.max_rollbacks=5", "train.epochs=3")
    with pytest.warns(UserWarning, match="rolled back"):
        run = train(cfg, tmp_path / "run")
    summary = runs.read_json(run / runs.SUMMARY)
    assert summary["rollbacks"] >= 1 and summary["skipped_steps"] >= cfg.train.max_bad_steps
    lr = checkpoint.latest(run)[1]["param_groups"][0]["lr"]
    assert lr == pytest.approx(20 * 0.1 ** summary["rollbacks"])
    assert all_checkpoints_finite(run)


def test_divergence_that_does_not_recover_stops_cleanly(tmp_path, monkeypatch):
    monkeypatch.setitem(objectives.OBJECTIVES, "elbo", blow_up_above(-1.0))  # NaN from the first step
    cfg = tiny_config("train.max_rollbacks=2")
    with pytest.warns(UserWarning), pytest.raises(Diverged, match="training diverged.*lower train.lr"):
        train(cfg, tmp_path / "run")
    assert all_checkpoints_finite(tmp_path / "run")


def test_gradient_clipping_bounds_the_update(tmp_path):
    cfg = tiny_config("train.clip_grad=1e-3", "train.epochs=1", "train.lr=1e-3")
    run = train(cfg, tmp_path / "run")
    assert math.isfinite(runs.read_json(run / runs.SUMMARY)["elbo"])


def test_resume_refuses_a_damaged_checkpoint(tmp_path, capsys):
    from reparam import cli

    run = train(tiny_config("train.epochs=1"), tmp_path / "run")
    newest = checkpoint.list_checkpoints(run)[-1]
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    newest.write_bytes(newest.read_bytes()[:300])  # truncated, as a bad copy would leave it
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a valid safetensors" in err[0] and newest.name in err[0]
    after = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k != newest.name} == {k: v for k, v in before.items() if k != newest.name}


@pytest.mark.parametrize("name", ["gaussian", "nvil"])
def test_a_checkpoint_written_by_version_0_1_resumes_to_its_own_final_weights(name, tmp_path):
    """tests/data/checkpoint-v0.1-*: config.json and the step-7 checkpoint of a 16-step digits run
    written by reparam 0.1 (the layout before the trainer owned its state; ``nvil`` keeps its score
    baseline's weights under model.baseline.*), and that run's final weights (the baseline's as
    baseline.*). Resumed today, the run ends on the very same weights, bit for bit: the VAE's in
    model.safetensors, the baseline's in the objective's part of the newest checkpoint. Bit for bit
    needs the writer's float kernels (AVX-512); on a CPU without them the NVIL run's first layer
    ends 7e-9 away, a different summation order's rounding, and is held to 1e-6."""
    import shutil

    from reparam.train import resume

    source = Path(__file__).parents[1] / "data" / f"checkpoint-v0.1-{name}"
    run = tmp_path / name
    shutil.copytree(source, run)
    resume(run, progress=False)
    want = runs.load_tensors(source / "final-weights.safetensors")
    got = runs.load_tensors(run / runs.WEIGHTS)
    got.update({k.replace("objective.", "", 1): v for k, v in checkpoint.latest(run)[0].items() if k.startswith("objective.")})
    assert got.keys() == want.keys()
    if avx512() or all(torch.equal(got[k], want[k]) for k in want):  # the fixtures were written on an AVX-512 CPU
        assert all(torch.equal(got[k], want[k]) for k in want)
    else:  # other SIMD kernels sum in another order: rounding apart, far below one Adam step (lr 1e-3)
        assert max(float((got[k] - want[k]).abs().max()) for k in want) < 1e-6


@pytest.mark.parametrize("name", ["m2-ema", "hierarchy", "cvae-iaf"])
def test_a_checkpoint_written_by_version_0_2_resumes_to_its_own_final_state(name, tmp_path):
    """tests/data/checkpoint-v0.2-*: config.json and one mid-run checkpoint of a 2-epoch digits run
    written by reparam 0.2.0 (commit 4aca24b, a CPU without AVX-512), and that run's last checkpoint
    (final-checkpoint.safetensors). ``m2-ema``: M2 with score-function labels, a labelled batch of 30
    (its own data order, ``lperm``, part used) and train.ema=0.9, stopped mid-epoch at step 5;
    ``hierarchy``: two stochastic layers, a cosine schedule; ``cvae-iaf``: a conditional VAE with an
    IAF posterior and a MoG prior. Resumed today, the run ends on the very same state: every tensor
    of the newest checkpoint (weights, objective, optimizer, weight average, RNG streams, data
    order) and the counters of its header, bit for bit on a CPU of the writer's kind (without
    AVX-512); on one with AVX-512 the floats are held to 1e-6 (another summation order)."""
    import shutil

    from reparam.train import resume

    source = Path(__file__).parents[1] / "data" / f"checkpoint-v0.2-{name}"
    run = tmp_path / name
    shutil.copytree(source, run)
    resume(run, progress=False)
    want, want_meta = checkpoint.read(source / "final-checkpoint.safetensors")
    got, got_meta = checkpoint.latest(run)
    assert got.keys() == want.keys()
    counters = ("step", "epoch", "pos", "lpos", "rollbacks", "skipped_steps", "param_groups", "average_updates")
    assert {k: got_meta.get(k) for k in counters} == {k: want_meta.get(k) for k in counters}
    exact = [k for k in want if not want[k].is_floating_point() or k.startswith("rng.")]
    assert all(torch.equal(got[k], want[k]) for k in exact)
    if not avx512():
        assert all(torch.equal(got[k], want[k]) for k in want)
    else:
        assert max(float((got[k] - want[k]).abs().max()) for k in want if k not in exact) < 1e-6


def avx512() -> bool:
    """Whether this CPU has AVX-512 (the float kernels the v0.1 fixtures' final weights came from)."""
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


# --- a run stopped before its first checkpoint, a finished run, checkpoint_every ---------------------

#: Two epochs of 15 steps on the digits; one thread, so two runs agree bit for bit.
SHORT = ["train.epochs=2", "train.eval_k=20", "train.progress=false", "model.hidden=[32]", "latent.dim=4", "train.threads=1", "train.report=false"]
#: ``reparam ARGS`` killed by SIGKILL where it would write its first checkpoint (step 0).
KILLED_BEFORE_FIRST_CHECKPOINT = """
import os, signal, sys
from reparam import cli
from reparam import checkpoint
checkpoint.save = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def short_reference(tmp_path_factory) -> Path:
    return train(tiny_config(*SHORT), tmp_path_factory.mktemp("short") / "run")


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0_bit_for_bit(short_reference, tmp_path, capsys):
    from tests.helpers import assert_user_error, in_process, python

    run = tmp_path / "run"
    killed = python("-c", KILLED_BEFORE_FIRST_CHECKPOINT, "train", *SHORT, "--out", str(run))
    assert killed.returncode == -signal.SIGKILL
    assert sorted(p.name for p in run.iterdir()) == [runs.CONFIG]  # stuck, before this fix
    proc = in_process(capsys, "train", *SHORT, "--out", str(run))  # plain re-running says what to do
    assert_user_error(proc, f"stopped before its first checkpoint (nothing was trained); start it with: reparam train --resume {run}")
    assert sorted(p.name for p in run.iterdir()) == [runs.CONFIG]
    proc = in_process(capsys, "train", "--resume", str(run), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert_bitwise_equal(weights(short_reference), weights(run))
    assert [{k: v for k, v in m.items() if k != "seconds"} for m in runs.read_jsonl(run / runs.METRICS)] == [
        {k: v for k, v in m.items() if k != "seconds"} for m in runs.read_jsonl(short_reference / runs.METRICS)
    ]


def test_a_full_disk_at_the_first_checkpoint_says_how_to_go_on_and_resume_starts_from_step_0(short_reference, tmp_path, capsys, monkeypatch):
    import errno

    from tests.helpers import assert_user_error, in_process

    def full(path, tensors, meta):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    run = tmp_path / "run"
    with monkeypatch.context() as mp:
        mp.setattr(checkpoint, "save_tensors", full)
        proc = in_process(capsys, "train", *SHORT, "--out", str(run))
    assert_user_error(proc, f"No space left on device ({run / runs.CHECKPOINTS}/step-000000000.safetensors); free space, then: reparam train --resume {run}")
    assert runs.untrained(run)
    proc = in_process(capsys, "train", "--resume", str(run), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert_bitwise_equal(weights(short_reference), weights(run))


def test_a_run_whose_checkpoints_are_gone_is_not_restarted(short_reference, tmp_path, capsys):
    """Weights or metrics beside no checkpoint: something was trained, so --resume refuses (one
    line) rather than start it again over them."""
    import shutil

    from tests.helpers import assert_user_error, in_process, snapshot

    run = shutil.copytree(short_reference, tmp_path / "run")
    shutil.rmtree(run / runs.CHECKPOINTS)
    before = snapshot(run)
    assert_user_error(in_process(capsys, "train", "--resume", str(run)), "has no checkpoint to resume from")
    assert snapshot(run) == before


def test_resuming_a_finished_run_says_so_and_rewrites_nothing(short_reference, tmp_path, capsys):
    import shutil

    from tests.helpers import in_process, snapshot

    run = shutil.copytree(short_reference, tmp_path / "run")
    cfg = runs.read_json(run / runs.CONFIG)
    cfg["train"]["progress"] = True  # the note comes alone, without the line that announces training
    runs.write_json(run / runs.CONFIG, cfg)
    before = snapshot(run)
    proc = in_process(capsys, "train", "--resume", str(run))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0].startswith(f"reparam: {run} already finished its 2 epochs; nothing was rewritten")
    assert len(proc.stderr.splitlines()) == 1
    assert "train.epochs=N" in proc.stderr and "reparam eval" in proc.stderr
    assert "test ELBO" in proc.stdout and snapshot(run) == before
    proc = in_process(capsys, "train", "--resume", str(run), "train.epochs=2", "--quiet")  # the count it already reached
    assert proc.returncode == 0 and "already finished" in proc.stderr and snapshot(run) == before


def checkpoint_steps(run: Path) -> list[int]:
    return [int(p.stem.split("-")[1]) for p in checkpoint.list_checkpoints(run)]


def test_checkpoint_every_is_the_steps_between_checkpoints_and_resume_stays_exact(short_reference, tmp_path):
    """train.checkpoint_every=7 on 2 epochs of 15 steps: checkpoints at 0, 7, 14, 21, 28 and at the
    end (30), none at the end of epoch 1 (15); cut at 14 and resumed, the run ends as one that never
    stopped, the evaluation at step 15 included."""
    from reparam.train import resume

    run = train(tiny_config(*SHORT, "train.checkpoint_every=7", "train.keep_checkpoints=10"), tmp_path / "run")
    assert checkpoint_steps(run) == [0, 7, 14, 21, 28, 30]
    assert_bitwise_equal(weights(short_reference), weights(run))
    for path in checkpoint.list_checkpoints(run):
        if int(path.stem.split("-")[1]) > 14:
            path.unlink()
    (run / runs.SUMMARY).unlink()
    resume(run, progress=False)
    assert_bitwise_equal(weights(short_reference), weights(run))
    assert [m["step"] for m in runs.read_jsonl(run / runs.METRICS)] == [15, 30]
