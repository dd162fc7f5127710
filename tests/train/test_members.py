"""Members: lists over the seed and one key, stacks that step as their members would alone, resume and isolation."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch

from reparam import config, latents, objectives, runs
from reparam.model import build
from reparam.model.stacked import Stacked, stackable
from reparam.train import members as mem
from reparam.train import train
from reparam.train.ensemble import capture, make_trainers, restore_noise, train_members
from reparam.train.stacked import Stack
from tests.conftest import TINY
from tests.helpers import assert_user_error, in_process, reparam
from tests.train.test_reliability import assert_bitwise_equal, kill_at_step, launch, weights

# Float tolerance of a stacked step against the member's own: the same weights, data and noise,
# summed in another order (a batched matmul under vmap against addmm), differ by float32 rounding:
# measured 1.5e-7 relative on the loss at the first step, at most 2.4e-7 over 200 steps (Adam's
# normalized update does not amplify it), and 1.6e-6 on weights of magnitude up to 2.4. The bounds
# are about 10x those: 2e-6 relative on every step's loss, 2e-5 absolute on the weights (~70 float32
# ulps at 2.4). A real difference is far outside them: another noise draw moves the loss by ~1e-2.
RTOL, ATOL_WEIGHTS = 2e-6, 2e-5


def listed(*overrides: str) -> list[mem.Member]:
    raw = config.load_raw(None, [*TINY, *overrides])
    out = mem.expand(raw)
    assert out is not None
    return out


# --- lists ---------------------------------------------------------------------------------
def test_a_list_over_the_seed_makes_one_member_per_seed():
    members = listed("seed=[3,1,2]")
    assert [m.name for m in members] == ["seed-3", "seed-1", "seed-2"]
    assert [m.cfg.seed for m in members] == [3, 1, 2] and members[0].settings == {"seed": 3}


def test_a_list_over_one_key_is_crossed_with_the_seeds_and_stacks_by_shape():
    members = listed("train.lr=[1e-3,2e-3]", "seed=[0,1]")
    assert [m.name for m in members] == ["lr-0.001-seed-0", "lr-0.001-seed-1", "lr-0.002-seed-0", "lr-0.002-seed-1"]
    assert [m.cfg.train.lr for m in members] == [1e-3, 1e-3, 2e-3, 2e-3]
    assert len(mem.groups(members)) == 1  # the rate may differ inside a stack
    assert len(mem.groups(listed("objective.k=[1,2]", "seed=[0,1]"))) == 2  # K changes the shapes: one stack each
    assert len(mem.groups(listed("objective.beta=[1,4]", "seed=[0,1]"))) == 1


def test_a_key_that_takes_a_list_is_a_grid_only_as_a_list_of_lists():
    assert mem.expand(config.load_raw(None, ["model.hidden=[32,16]"])) is None
    members = listed("model.hidden=[[32],[16,8]]")
    assert [m.name for m in members] == ["hidden-32", "hidden-16x8"] and members[1].cfg.model.hidden == [16, 8]


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        (["seed=[0,1]", "train.lr=[1e-3,2e-3]", "objective.k=[1,2]"], "a grid is a list over one key"),
        (["seed=[]"], "seed=[] lists no value"),
        (["seed=[0,0]"], "seed lists 0 twice"),
        (["seed=[0,1]", "train.lr=[1e-3,-1.0]"], "train.lr"),
        (["seed=[0,1.5]"], "seed must be of type int"),
    ],
)
def test_bad_lists_are_one_line_and_write_nothing(settings, needle, tmp_path, capsys):
    assert_user_error(in_process(capsys, "train", *settings, "--out", str(tmp_path / "run")), needle)
    assert not (tmp_path / "run").exists()


# --- a stack steps as its members would alone ----------------------------------------------
def solo_twins(members: list[mem.Member], folder: Path) -> tuple[list, list]:
    with contextlib.ExitStack() as sessions:
        return make_trainers(members, folder, None, sessions)


def step_alone(trainer, rng: list, i: int) -> torch.Tensor:
    restore_noise(rng[i], trainer.device)
    trainer.model.train()
    out = trainer.train_step(trainer.batches.next())
    rng[i] = capture(trainer.device)
    return out["loss"]


@pytest.mark.parametrize(("grid", "steps"), [("train.lr=[1e-3,3e-3]", 200), ("objective.beta=[0.5,1]", 60), ("objective.name=iwae", 60)])
def test_each_member_of_a_stack_takes_the_steps_it_takes_alone(grid, steps, tmp_path):
    members = listed(grid, "seed=[0,1]", "objective.k=2")
    trainers, rng = solo_twins(members, tmp_path / "stack")
    twins, twin_rng = solo_twins(members, tmp_path / "alone")
    stack = Stack(trainers, rng)
    for t in trainers:
        t.model.train()
    worst = 0.0
    for _ in range(steps):
        ok, out = stack.train_step()
        assert bool(ok.all())
        for i, twin in enumerate(twins):
            alone = step_alone(twin, twin_rng, i)
            worst = max(worst, abs(float(out["loss"][i] - alone)) / abs(float(alone)))
        for t in [*trainers, *twins]:  # the schedules (warm-up, rate) move with the step; a new epoch a new order
            t.step += 1
            t.apply_lr()
            if t.batches.epoch_done():
                t.batches.next_epoch()
    assert worst < RTOL, f"a member's loss left its solo run's by {worst:.2e} (relative)"
    for t, twin in zip(trainers, twins):
        for p, q in zip(t.model.parameters(), twin.model.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=ATOL_WEIGHTS)


@pytest.mark.parametrize("family", latents.names())
def test_every_family_stacks_its_terms_to_float_tolerance(family):
    cfgs = [config.load(None, [*TINY, f"latent.family={family}", f"seed={s}"]) for s in (0, 1)]
    models = []
    for cfg in cfgs:
        torch.manual_seed(cfg.seed)
        models.append(build(cfg, (8, 8, 1)))
    x = torch.rand(2, 6, 8, 8, 1).round()

    def draws(m, fn):
        torch.manual_seed(100 + m)
        return fn()

    stacked = Stacked(models, draws)
    bound, terms = objectives.OBJECTIVES["iwae"](stacked, x, k=3)  # (M, B)
    for m, model in enumerate(models):
        torch.manual_seed(100 + m)
        alone, own = objectives.OBJECTIVES["iwae"](model, x[m], k=3)
        torch.testing.assert_close(bound[m], alone, rtol=1e-5, atol=1e-4)
        for key in own:
            torch.testing.assert_close(terms[key][m], own[key], rtol=1e-5, atol=1e-4)


def test_what_cannot_stack_says_why():
    def model(*overrides):
        torch.manual_seed(0)
        return build(config.load(None, [*TINY, *overrides]), (8, 8, 1))

    assert stackable([model(), model()]) is None
    assert "outside its encoder and decoder" in stackable([model("prior.name=mog"), model("prior.name=mog")])
    assert "differ in shape" in stackable([model(), model("model.hidden=[16]")])
    assert mem.solo_reason(config.load(None, [*TINY, "latent.flow=planar"])) == "a flow (latent.flow=planar)"


def test_a_stack_keeps_each_members_average_warm_up_and_schedule(tmp_path):
    extra = ["train.ema=0.9", "objective.warmup=20", "train.lr_schedule=cosine", "train.lr_final=1e-4", "train.epochs=3"]
    train_members(listed(*extra, "seed=[0,1]"), ["seed"], tmp_path / "ens", progress=False)
    for seed in (0, 1):
        alone = train(config.load(None, [*TINY, *extra, f"seed={seed}"]), tmp_path / f"alone{seed}")
        got, want = weights(tmp_path / "ens" / f"seed-{seed}"), weights(alone)  # the averages: what the summary and pictures saw
        assert got.keys() == want.keys()
        for key in got:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=ATOL_WEIGHTS)
        ours, theirs = (json.loads((d / runs.SUMMARY).read_text()) for d in (tmp_path / "ens" / f"seed-{seed}", alone))
        assert ours["steps"] == theirs["steps"] and math.isclose(ours["elbo"], theirs["elbo"], rel_tol=1e-5)


# --- one member's bad steps never touch another's weights --------------------------------
def poisoned(bad_steps: set[int], member: int):
    """The ELBO, NaN for one member of a stack at the stack's steps ``bad_steps`` (counted in calls)."""
    elbo, calls = objectives.OBJECTIVES["elbo"], [0]

    def objective(model, x, **kwargs):
        bound, terms = elbo(model, x, **kwargs)
        if isinstance(model, Stacked) and calls[0] in bad_steps:
            bound = bound.clone()
            bound[member] = math.nan
        calls[0] += isinstance(model, Stacked)
        return bound, terms

    return objective


def run_stack(members, folder, read_every=0) -> Stack:
    with contextlib.ExitStack() as sessions:
        trainers, rng = make_trainers(members, folder, None, sessions)
        stack = Stack(trainers, rng, read_every)
        stack.fit(progress=False)
    return stack


@pytest.mark.parametrize(("bad", "skipped", "rollbacks"), [({5, 17, 40}, 3, 0), (set(range(30, 36)), 6, 1)])
def test_a_members_bad_steps_are_its_own(bad, skipped, rollbacks, tmp_path, monkeypatch):
    members = listed("seed=[0,1]", "data.binarize=none", "train.checkpoint_every=4", "train.max_bad_steps=5", "train.epochs=3")
    alone = run_stack(members[:1], tmp_path / "alone")  # member 0 by itself
    monkeypatch.setitem(objectives.OBJECTIVES, "elbo", poisoned(bad, member=1))
    stack = run_stack(members, tmp_path / "stack")
    first, second = stack.trainers
    assert (first.skipped_steps, first.rollbacks) == (0, 0)
    assert (second.skipped_steps, second.rollbacks) == (skipped, rollbacks)
    for p, q in zip(first.model.parameters(), alone.trainers[0].model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=ATOL_WEIGHTS)  # the same steps as alone (see RTOL)
    assert all(torch.isfinite(p).all() for p in second.model.parameters())


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_deferred_reads_give_the_numbers_of_reads_at_every_step(tmp_path, monkeypatch):
    members = listed("seed=[0,1]", "train.checkpoint_every=0", "train.max_bad_steps=50")
    monkeypatch.setitem(objectives.OBJECTIVES, "elbo", poisoned({3, 4, 20}, member=0))
    late = run_stack(members, tmp_path / "late")
    monkeypatch.setitem(objectives.OBJECTIVES, "elbo", poisoned({3, 4, 20}, member=0))
    every = run_stack(members, tmp_path / "every", read_every=1)
    for a, b in zip(late.trainers, every.trainers):
        assert a.skipped_steps == b.skipped_steps
        assert untimed(a.held_out.records) == untimed(b.held_out.records)
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert torch.equal(p, q)


# --- the command --------------------------------------------------------------------------
def test_train_with_a_list_of_seeds_writes_each_members_run_and_the_spread_over_seeds(tmp_path, capsys):
    out = tmp_path / "ens"
    proc = reparam("train", *TINY, "train.progress=true", "seed=[0,1,2,3]", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "train as one stack" in proc.stderr and "mean ± SE over 4 seeds" in proc.stdout
    summary = json.loads((out / runs.SUMMARY).read_text())
    (row,) = summary["settings"]
    elbos = [json.loads((out / f"seed-{s}" / runs.SUMMARY).read_text())["elbo"] for s in range(4)]
    mean = sum(elbos) / 4
    assert row["metrics"]["elbo"]["values"] == elbos and math.isclose(row["metrics"]["elbo"]["mean"], mean)
    assert math.isclose(row["metrics"]["elbo"]["se"], math.sqrt(sum((e - mean) ** 2 for e in elbos) / 3 / 4))
    assert "image_se" in row["metrics"]["nll"]
    assert len(set(elbos)) == 4  # four different seeds, four different models
    ev = in_process(capsys, "eval", str(out / "seed-2"), "--k", "10")
    assert ev.returncode == 0, ev.stderr
    assert_user_error(in_process(capsys, "eval", str(out)), "name one of them")


def test_members_that_cannot_stack_train_one_after_another_as_they_would_alone(tmp_path, capsys):
    members = listed("latent.flow=planar", "seed=[0,1]")
    train_members(members, ["seed"], tmp_path / "ens", progress=False)
    assert "seed-0, seed-1 train one after another: a flow (latent.flow=planar)" in capsys.readouterr().err
    train(config.load(None, [*TINY, "latent.flow=planar", "seed=1"]), tmp_path / "alone")
    assert_bitwise_equal(weights(tmp_path / "ens" / "seed-1"), weights(tmp_path / "alone"))


# --- killed twice, resumed bit for bit -----------------------------------------------------
ARGS = ["train.epochs=4", "train.eval_k=20", "train.progress=false", "model.hidden=[32]", "latent.dim=4",
        "train.checkpoint_every=4", "train.threads=1", "train.batch_size=64", "train.report=false"]  # fmt: skip
SEEDS = "seed=[0,1,2]"


def test_an_ensemble_killed_twice_resumes_bit_for_bit(tmp_path):
    reference = tmp_path / "reference"
    raw = config.load_raw(None, [*ARGS, SEEDS])
    train_members(mem.expand(raw) or [], ["seed"], reference, progress=False)
    run = tmp_path / "run"
    proc = launch("train", *ARGS, SEEDS, "--out", str(run))
    kills = 0
    for target, jitter in ((24, 0.003), (60, 0.0)):
        kills += kill_at_step(proc, run / "seed-1", target, jitter)
        proc = launch("train", "--resume", str(run), "--quiet")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert kills == 2, "a kill landed after the run ended"
    for name in ("seed-0", "seed-1", "seed-2"):
        assert_bitwise_equal(weights(reference / name), weights(run / name))
        assert untimed(runs.read_jsonl(run / name / runs.METRICS)) == untimed(runs.read_jsonl(reference / name / runs.METRICS))
