"""Selection on a validation set: data.validation's split, train.keep_best, train.early_stop, and exact resume."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from reparam import checkpoint, config, data, evaluate, runs
from reparam.train import train
from reparam.train.members import solo_reason
from reparam.train.selection import Selection
from tests.conftest import tiny_config

# 0.03 makes the tiny digits VAE level off early: it stops at epoch 14 of 30, best at 12.
EARLY = ["data.validation=0.2", "train.keep_best=elbo", "train.early_stop=2", "train.epochs=30", "train.lr=0.03", "train.keep_checkpoints=100"]


# --- the split ---------------------------------------------------------------------------
def test_validation_rows_come_from_the_training_set_fixed_whatever_the_seed():
    plain = data.load(config.load(None, ["data.binarize=none"]).data)
    held = data.load(config.load(None, ["data.binarize=none", "data.validation=0.2", "seed=7"]).data)
    other = data.load(config.load(None, ["data.binarize=none", "data.validation=0.2", "seed=3"]).data)
    n = len(plain.train)
    assert len(held.valid) == round(0.2 * n) and len(held.train) == n - round(0.2 * n)
    assert torch.equal(held.valid, other.valid) and torch.equal(held.train, other.train)  # the run's seed plays no part
    assert torch.equal(held.test, plain.test)
    # the two parts are the training rows, each once, each with its own label
    rows = {(tuple(x.flatten().tolist()), int(y)) for x, y in zip(plain.train, plain.train_labels)}
    parts = [(tuple(x.flatten().tolist()), int(y)) for x, y in [*zip(held.train, held.train_labels), *zip(held.valid, held.valid_labels)]]
    assert len(parts) == n and set(parts) == rows
    assert len(data.load(config.load(None, ["data.validation=100"]).data).valid) == 100


def test_validation_images_are_binarized_once_with_a_fixed_seed_like_the_test_set():
    a = data.load(config.load(None, ["data.validation=50", "seed=1"]).data)
    b = data.load(config.load(None, ["data.validation=50", "seed=2"]).data)
    grey = data.load(config.load(None, ["data.validation=50", "data.binarize=none"]).data)
    assert set(a.valid.unique().tolist()) <= {0.0, 1.0} and torch.equal(a.valid, b.valid)
    assert not torch.equal(a.valid, grey.valid) and a.train.unique().numel() > 2  # dynamic: training images stay grey


def test_m2_labels_and_a_table_split_too():
    cfg = config.load(None, ["data.validation=0.1", "model.condition=label", "data.labeled=100", "prior.name=label"])
    d = data.load(cfg.data)
    data.check_labels(cfg, d)  # the labelled subset is drawn from what is left to train on
    assert len(d.valid_labels) == len(d.valid) and len(d.train_labels) == len(d.train)
    table = data.load(config.load(None, ["data.name=table", "data.path=sklearn:wine", "data.validation=0.25"]).data)
    assert len(table.valid) == round(0.25 * (len(table.train) + len(table.valid))) and table.valid.shape[1:] == table.train.shape[1:]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["train.keep_best=elbo"], "train.keep_best selects on a validation set; set data.validation"),
        (["train.early_stop=2", "train.keep_best=elbo"], "selects on a validation set"),
        (["data.validation=0.1", "train.early_stop=2"], "train.early_stop=2 watches the metric of train.keep_best"),
        (["data.validation=0.1", "train.keep_best=nll"], "train.keep_best must be one of elbo, log_px_z, kl, classification_error"),
        (["data.validation=0.1", "train.keep_best=classification_error"], "classification_error is M2's classifier error"),
        (["data.validation=1.5"], "data.validation must be a number of training images (>= 1) or a fraction in (0, 1)"),
        (["data.validation=-3"], "data.validation must be"),
    ],
)
def test_selection_settings_are_refused_with_one_line(overrides, needle, tmp_path, capsys):
    from tests.helpers import assert_bad_config

    assert_bad_config(overrides, needle, tmp_path, capsys)


def test_too_large_a_validation_set_is_refused_before_a_folder_is_written(tmp_path, capsys):
    from tests.helpers import assert_user_error, in_process

    assert_user_error(in_process(capsys, "train", "data.validation=5000", "--out", str(tmp_path / "r")), "data.validation=5000 holds out 5000 of the 1500")
    assert not (tmp_path / "r").exists()


def test_members_that_keep_their_best_train_one_after_another():
    assert "train.keep_best" in solo_reason(config.load(None, ["data.validation=0.1", "train.keep_best=elbo"]))
    assert solo_reason(config.load(None, ["data.validation=0.1"])) is None  # a validation set alone stacks


# --- the rule, on made-up evaluations ----------------------------------------------------
def selection(*overrides: str) -> Selection:
    cfg = config.load(None, ["data.validation=0.1", *overrides])
    trainer = SimpleNamespace(cfg=cfg, model=torch.nn.Linear(1, 1), step=0, total_steps=1000, clock=SimpleNamespace(seconds=0.0, budget=0.0))
    return Selection(trainer, None)  # type: ignore[arg-type]


def feed(part: Selection, values: list[float], metric: str = "elbo") -> int | None:
    """Evaluations at steps 10, 20, ...: the index at which the part stops (None: it never does)."""
    for i, v in enumerate(values):
        part.trainer.step = 10 * (i + 1)
        part.trainer.model.weight.data.fill_(i)  # so the kept weights say which evaluation they are
        part.after_evaluation({"step": 10 * (i + 1), "epoch": i + 1, f"val_{metric}": v})
        if part.stopping():
            return i
    return None


VALUES = [-50.0, -40.0, -45.0, -41.0, -39.0, -39.5, -40.0, -41.0]


def test_early_stop_counts_evaluations_without_improvement_and_keeps_the_best():
    part = selection("train.keep_best=elbo", "train.early_stop=2")
    assert feed(part, VALUES) == 3  # -45 and -41 after -40: two without improvement
    assert part.best_at == {"step": 20, "epoch": 2, "value": -40.0} and float(part.best["weight"]) == 1.0
    part = selection("train.keep_best=elbo", "train.early_stop=3")
    assert feed(part, VALUES) == 7 and part.best_at["epoch"] == 5


def test_evaluations_during_the_kl_warm_up_do_not_count():
    """objective.warmup=40 steps: the evaluation at step 30 (-45, no better) is in the warm-up, so
    the patience of 2 runs out only after -39 at step 50 was followed by two worse ones."""
    part = selection("train.keep_best=elbo", "train.early_stop=2", "objective.warmup=40")
    assert feed(part, VALUES) == 6 and part.best_at["step"] == 50
    part = selection("train.keep_best=elbo", "train.early_stop=2", "objective.warmup=50%")  # a share of the 1,000 steps: all 8 inside it
    assert feed(part, VALUES) is None and part.best_at["step"] == 50


def test_a_metric_where_lower_is_better_and_non_finite_values():
    part = selection("train.keep_best=kl")
    feed(part, [5.0, 4.0, 6.0], metric="kl")
    assert part.best_at["value"] == 4.0
    part = selection("train.keep_best=elbo")
    feed(part, [math.nan, -40.0, math.nan])
    assert part.best_at["value"] == -40.0


# --- a real run --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> tuple[Path, list[int]]:
    """The early-stopping run, with the sizes of every set its ELBOs were computed on during training."""
    seen: list[int] = []
    finals: list[int] = []
    mp = pytest.MonkeyPatch()
    real_terms, real_evaluate = evaluate.elbo_terms, evaluate.evaluate
    mp.setattr(evaluate, "elbo_terms", lambda model, x, *a, **k: seen.append(len(x)) or real_terms(model, x, *a, **k))
    mp.setattr(evaluate, "evaluate", lambda model, x, *a, **k: finals.append(len(x)) or real_evaluate(model, x, *a, **k))
    try:
        run = train(tiny_config(*EARLY), tmp_path_factory.mktemp("early") / "run")
    finally:
        mp.undo()
    return run, seen + [-1] + finals


def test_early_stop_keeps_the_best_and_reads_the_test_set_once(stopped):
    run, sizes = stopped
    d = data.load(tiny_config(*EARLY).data)
    during, final = sizes[: sizes.index(-1)], sizes[sizes.index(-1) + 1 :]
    assert set(during) == {len(d.valid)} and final == [len(d.test)]  # validation every epoch; the test set once, at the end
    records = runs.read_jsonl(run / runs.METRICS)
    assert not any(k.startswith("test_") for m in records for k in m)
    values = [m["val_elbo"] for m in records]
    best = max(range(len(values)), key=values.__getitem__)
    summary = runs.read_json(run / runs.SUMMARY)
    assert summary["stopped_by"] == "early_stop" and summary["epochs"] == len(records) < 30
    assert len(records) - 1 - best == 2  # stopped after train.early_stop=2 evaluations without a better one
    assert summary["kept"] == {"weights": "best", "metric": "val_elbo", "step": records[best]["step"], "epoch": records[best]["epoch"], "value": values[best]}
    assert summary["validation"]["elbo"] == values[best]
    # model.safetensors (what reparam eval reads) is the kept weights, stored in the last checkpoint
    state = checkpoint.latest_state(run)
    kept = runs.load_tensors(run / runs.WEIGHTS)
    assert all(torch.equal(kept[k], state["best"][k]) for k in kept) and any(not torch.equal(kept[k], state["model"][k]) for k in kept)
    assert runs.read_json(run / runs.STATE_JSON)["step"] == records[best]["step"]


def test_an_early_stopped_run_resumed_midway_ends_bit_for_bit_the_same(stopped, tmp_path, capsys):
    from reparam.train import resume
    from tests.helpers import in_process

    run = Path(shutil.copytree(stopped[0], tmp_path / "run"))
    cut = runs.read_jsonl(run / runs.METRICS)[7]["step"]  # after epoch 8: past the first best, before the stop
    for path in checkpoint.list_checkpoints(run):
        if int(path.stem.split("-")[1]) > cut:
            path.unlink()
    (run / runs.SUMMARY).unlink()
    resume(run, progress=False)
    ref = stopped[0]
    a, b = runs.load_tensors(ref / runs.WEIGHTS), runs.load_tensors(run / runs.WEIGHTS)
    assert all(torch.equal(a[k], b[k]) for k in a)
    same = lambda p: [{k: v for k, v in m.items() if k != "seconds"} for m in runs.read_jsonl(p / runs.METRICS)]  # noqa: E731
    assert same(run) == same(ref)
    drop = ("train_seconds", "nll_plan")
    assert {k: v for k, v in runs.read_json(run / runs.SUMMARY).items() if k not in drop} == {k: v for k, v in runs.read_json(ref / runs.SUMMARY).items() if k not in drop}
    proc = in_process(capsys, "train", "--resume", str(run))  # finished: said so, nothing trained
    assert proc.returncode == 0 and "stopped early at epoch 14" in proc.stderr


def test_validation_rows_of_images_held_as_uint8_are_floats_like_the_test_set(tmp_path):
    """8-bit images are held as uint8 levels: the validation rows taken from them are evaluated as
    the test set is, floats in [0, 1] (binarized once), and a run selecting on them trains."""
    import numpy as np

    x = np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    for binarize in ("none", "dynamic"):
        cfg = config.load(None, ["data.name=python", "data.validation=10", f"data.binarize={binarize}"])
        held = data.python.given((x[:30], x[30:]), cfg.data)
        assert held.train.dtype == torch.uint8 and held.valid.dtype == held.test.dtype == torch.float32
        if binarize == "none":  # the same floats as the training rows they were, converted per batch
            assert {tuple(v.flatten().tolist()) for v in held.valid} <= {tuple(t.flatten().tolist()) for t in data.to_unit(x[:30], "x")}
    run = train(tiny_config("data.name=python", "data.validation=10", "train.keep_best=elbo", "train.epochs=2"), tmp_path / "run", data=(x[:30], x[30:]))
    assert runs.read_json(run / "summary.json")["kept"]["metric"] == "val_elbo"


def test_under_torchrun_every_process_needs_validation_rows():
    from reparam import distributed
    from reparam.errors import ConfigError

    distributed.check_sizes(distributed.Dist(0, 3), 100, 10, 50, 3)
    with pytest.raises(ConfigError, match="3 processes but the validation set holds 2 images"):
        distributed.check_sizes(distributed.Dist(0, 3), 100, 10, 50, 2)
