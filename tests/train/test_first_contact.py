"""What ``reparam train`` tells a newcomer: every key in --help, the resolved config without
training, a line before the slow start, and the report's path at the end."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest

from reparam import config, config_keys
from reparam.train import run as run_mod
from tests.helpers import assert_user_error, in_process

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OVERRIDES = ["latent.dim=3", "model.hidden=[64,32]", "objective.name=renyi", "objective.alpha=0.25", "objective.warmup=10%",
             "train.budget=90s", "train.log=tensorboard,wandb", "seed=7"]  # fmt: skip


def test_every_key_has_a_default_and_a_meaning_from_its_dataclass():
    keys = config_keys.keys()
    assert [k.name for k in keys] == config.valid_keys()
    assert not [k.name for k in keys if not k.meaning], "a config field without a trailing comment has no meaning to show"
    assert {k.name: k.default for k in keys}["model.hidden"] == config.ModelConfig().hidden


def test_train_help_lists_every_key_with_its_default_and_meaning(capsys):
    proc = in_process(capsys, "train", "--help")
    out = proc.stdout
    assert proc.returncode == 0 and "--print-config" in out
    text = " ".join(out.split())  # the meanings are wrapped to the terminal's width
    for key in config_keys.keys():
        assert f"{key.name}=" in text and " ".join(key.meaning.split()[:4]) in text, key.name
    assert "model.hidden=[256,128]" in text and "train.lr=0.001" in text and 'data.path=""' in text


@pytest.mark.parametrize("value", ["plain", "", 'a "quoted" \\path\\', "line\nbreak\ttab\x7f\x01", "ünïcödé ☃", 1e-5, -3, 0.1, True,
                                   math.inf, -math.inf, [1, 2], ["a", "b"], [], {"x": 1, "odd key": "v"}])  # fmt: skip
def test_a_value_written_as_toml_reads_back_the_same(value):
    assert tomllib.loads(f"v = {config_keys.toml_value(value)}")["v"] == value


def test_print_config_prints_toml_that_loads_back_to_the_same_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = in_process(capsys, "train", "--print-config", *OVERRIDES)
    assert proc.returncode == 0, proc.stderr
    expected = config.load(None, OVERRIDES).to_dict()
    assert tomllib.loads(proc.stdout) == expected
    (tmp_path / "printed.toml").write_text(proc.stdout)
    assert config.load(tmp_path / "printed.toml").to_dict() == expected
    assert "lr = 0.001  # Adam's learning rate" in proc.stdout  # each key with its meaning
    assert list(tmp_path.iterdir()) == [tmp_path / "printed.toml"]  # nothing trained, no runs/ folder


def test_print_config_reads_a_config_file_too(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("[latent]\ndim = 5\n")
    proc = in_process(capsys, "train", str(tmp_path / "c.toml"), "--print-config", "train.epochs=3")
    assert proc.returncode == 0 and "dim = 5" in proc.stdout and "epochs = 3" in proc.stdout


@pytest.mark.parametrize(
    "args, needle",
    [(["latent.dimm=3"], "unknown config key latent.dimm"), (["train.lr=-1"], "train.lr must be a finite rate > 0"),
     (["--resume", "RUN"], "--print-config shows the config a new run would train with"),
     (["--out", "elsewhere"], "--print-config writes nothing; --out and --overwrite do not apply")],
)  # fmt: skip
def test_print_config_refuses_in_one_line(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_user_error(in_process(capsys, "train", "--print-config", *args), needle)
    assert not list(tmp_path.iterdir())


@pytest.fixture
def fake_training(tiny_run, monkeypatch, capsys):
    """train() and resume() replaced by a copy of the tiny run (and a report when asked): the
    opening line they were given to say when training begins is kept in ``said``."""
    said: list[str] = []

    def fake(cfg, out, report: bool, opening: str | None = None):
        said.append(f"reparam: {opening}\n" if opening else "")
        if not Path(out).exists():
            shutil.copytree(tiny_run, out)
        if report:
            (Path(out) / "report.html").write_text("<html></html>")
        return Path(out)

    monkeypatch.setattr(run_mod, "train", lambda cfg, out, overwrite=False, opening=None: fake(cfg, out, cfg.train.report, opening))
    monkeypatch.setattr(run_mod, "resume", lambda run, progress=None, opening=None, **_: fake(None, run, True, opening))
    return said


def test_train_opens_with_a_line_and_ends_naming_the_report(fake_training, tmp_path, capsys):
    out = tmp_path / "run"
    proc = in_process(capsys, "train", "--out", str(out), "train.epochs=2", "latent.dim=4", "model.hidden=[32]")
    assert proc.returncode == 0, proc.stderr
    (said,) = fake_training
    assert said.startswith("reparam: training a VAE on digits for 2 epochs: gaussian latent, dim 4; mlp 32; bernoulli likelihood; elbo")
    assert said.rstrip().endswith(f"run folder {out}") and len(said.splitlines()) == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[-3].startswith("test ELBO") and lines[-2:] == [f"report: {out / 'report.html'}", str(out)]


def test_no_opening_line_when_quiet_and_no_report_line_without_a_report(fake_training, tmp_path, capsys):
    out = tmp_path / "run"
    proc = in_process(capsys, "train", "--out", str(out), "--quiet", "train.report=false")
    assert proc.returncode == 0 and fake_training == [""]
    assert "report" not in proc.stdout and proc.stdout.strip().splitlines()[-1] == str(out)


def test_resume_opens_with_a_line_too(fake_training, tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "train": {**saved["train"], "progress": True}}))
    proc = in_process(capsys, "train", "--resume", str(run), "train.epochs=3")  # a finished run is left alone, with no opening line
    assert proc.returncode == 0, proc.stderr
    assert fake_training[0].startswith(f"reparam: continuing {run} from its newest checkpoint: digits for 2 epochs")
    assert proc.stdout.strip().splitlines()[-2:] == [f"report: {run / 'report.html'}", str(run)]


def test_a_bad_input_is_one_line_without_the_opening_line(tmp_path, capsys):
    """The opening line is said once the inputs are read and checked: a missing data file is one line."""
    proc = in_process(capsys, "train", "--out", str(tmp_path / "run"), f"data.path={tmp_path / 'missing.npz'}", "train.progress=true")
    assert_user_error(proc, "does not exist")
    assert "training a VAE" not in proc.stderr and not (tmp_path / "run").exists()
