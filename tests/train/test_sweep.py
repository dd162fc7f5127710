"""``reparam sweep``: trials as run folders scored on validation, a study that continues, its table and plot."""

from __future__ import annotations

import csv
import sys

import pytest

from reparam import runs
from reparam.train import sweep as sweep_mod
from tests.conftest import TINY
from tests.helpers import assert_user_error, in_process, snapshot

pytest.importorskip("optuna")

SMALL = [s for s in TINY if not s.startswith(("latent.dim", "train.epochs", "train.eval_k"))]
BASE = [*SMALL, "train.epochs=1", "train.eval_k=5", "data.validation=100"]
SPACE = ["train.lr=loguniform(1e-3,3e-2)", "latent.dim=choice(2,4)"]


def test_a_sweep_scores_each_trial_on_validation_continues_and_resumes_a_cut_trial(tmp_path, capsys):
    import optuna

    out = tmp_path / "sweep"
    proc = in_process(capsys, "sweep", *BASE, *SPACE, "--trials", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "trial-001 (2/2): train.lr=" in proc.stderr
    # a trial the study handed out but never heard back from (the sweep was killed): the next call trains it
    study = optuna.load_study(study_name="reparam", storage=sweep_mod.storage(out))
    study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True), "latent.dim": optuna.distributions.CategoricalDistribution(["2", "4"])})
    proc = in_process(capsys, "sweep", *BASE, *SPACE, "--trials", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "trial-002 (3/3)" in proc.stderr and "trial-003" not in proc.stderr  # three in all, the cut one included
    with open(out / sweep_mod.TABLE_CSV) as f:
        table = list(csv.DictReader(f))
    assert [r["trial"] for r in table] == ["0", "1", "2"] and {r["state"] for r in table} == {"complete"}
    for r in table:  # each trial a normal run: its config holds its parameters; its value, its best validation ELBO
        folder = out / r["folder"]
        cfg = runs.read_json(folder / runs.CONFIG)
        assert cfg["train"]["lr"] == float(r["train.lr"]) and str(cfg["latent"]["dim"]) == r["latent.dim"]
        assert 1e-3 <= cfg["train"]["lr"] <= 3e-2 and cfg["train"]["keep_best"] == "elbo"
        assert float(r["val_elbo"]) == max(m["val_elbo"] for m in runs.read_jsonl(folder / runs.METRICS))
    best = max(table, key=lambda r: float(r["val_elbo"]))
    assert f"| {best['trial']} (best) |" in (out / sweep_mod.TABLE_MD).read_text() and proc.stdout.startswith("| trial |")
    assert (out / sweep_mod.PLOT).read_bytes().startswith(b"\x89PNG")
    before = snapshot(out)
    proc = in_process(capsys, "sweep", *BASE, "train.lr=loguniform(1e-3,3e-2)", "--trials", "3", "--out", str(out))  # another search
    assert_user_error(proc, f"{out} holds another sweep")
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ([*SMALL, *SPACE], "reparam sweep selects on a validation set; set data.validation"),
        ([*BASE], "reparam sweep needs at least one searched key"),
        ([*BASE, "train.lr=loguniform(0,1e-2)"], "train.lr=loguniform(0,1e-2): loguniform needs low > 0"),
        ([*BASE, "train.lr=uniform(1e-2)"], "uniform takes two numbers, low and high"),
        ([*BASE, "latent.dim=int(0,3)"], "latent.dim=int(0,3) at 0: latent.dim must be a positive integer"),
        ([*BASE, "latent.dim=int(2.5,3)"], "int takes two whole numbers"),
        ([*BASE, "train.nope=choice(1,2)"], "unknown config key train.nope"),
        ([*BASE, "train.epochs=choice(1,2)"], "train.epochs is searched and also set"),
        ([*BASE, "latent.dim=choice(1,2)", "latent.dim=int(1,2)"], "latent.dim is searched and also set"),
    ],
)
def test_bad_sweeps_are_refused_with_one_line_before_anything_is_written(settings, needle, tmp_path, capsys):
    assert_user_error(in_process(capsys, "sweep", *settings, "--trials", "2", "--out", str(tmp_path / "s")), needle)
    assert not (tmp_path / "s").exists()


def test_without_optuna_the_sweep_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    assert_user_error(in_process(capsys, "sweep", *BASE, *SPACE, "--trials", "2", "--out", str(tmp_path / "s")), "pip install 'reparam[sweep]'")


def test_choice_arguments_split_at_top_level_commas():
    d = sweep_mod.dimension('model.hidden=choice([64, 32], [128],"a,b")')
    assert d is not None and d.args == ["[64, 32]", "[128]", '"a,b"']
    assert sweep_mod.dimension("train.lr=0.01") is None and sweep_mod.dimension("data.path=foo(1).csv") is None
