"""Every command end to end with tiny settings, and bad input: one line, exit 2, nothing changed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TINY
from tests.helpers import assert_user_error, in_process, reparam, snapshot


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = reparam("train", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)  # the run folder is printed last
    return out


def test_train_writes_the_run_folder(cli_run):
    names = {p.name for p in cli_run.iterdir()}
    expected = {"config.json", "metrics.jsonl", "model.safetensors", "checkpoints", "state.json", "summary.json", "samples.png", "reconstructions.png"}
    assert expected <= names
    assert not [n for n in names if n.endswith(".tmp")]
    metrics = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    summary = json.loads((cli_run / "summary.json").read_text())
    assert summary["nll"] > 0 and summary["nll_se"] > 0


def test_eval_json(cli_run):
    proc = reparam("eval", str(cli_run), "--k", "10", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"elbo", "nll", "nll_se", "k", "n"} <= set(out) and out["k"] == 10 and out["n"] == 297
    assert out["nll"] <= -out["elbo"] + 6 * out["nll_se"]


def test_eval_table(cli_run):
    proc = reparam("eval", str(cli_run), "--k", "5")
    assert proc.returncode == 0 and "NLL" in proc.stdout and "bits/dim" in proc.stdout


def test_sample_writes_a_png(cli_run, tmp_path):
    out = tmp_path / "s.png"
    proc = reparam("sample", str(cli_run), "--n", "9", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_m_and_console_script_agree():
    proc = subprocess.run(["reparam", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout


def test_existing_run_is_refused_and_unchanged(cli_run):
    before = snapshot(cli_run)
    assert_user_error(reparam("train", *TINY, "--out", str(cli_run)), "already holds a run")
    assert snapshot(cli_run) == before


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "latent.dimm=3"], "unknown config key latent.dimm"),
        (["train", "train.epochs=x"], "must be of type int"),
        (["train", "latent.family=nope"], "unknown latent family"),
        (["train", "data.name=file", "data.path=/nonexistent.npz"], "does not exist"),
        (["train", "likelihood.name=bernoulli", "data.name=file", "data.path=BIG"], "expected [0, 1] or 0..255"),
        (["train", "/no/such/config.toml"], "does not exist"),
        (["train", "train.device=cuda"], "no CUDA GPU"),
        (["eval", "/no/such/run"], "does not exist"),
        (["eval", "EMPTY"], "config.json is missing"),
        (["eval", "RUN", "--k", "0"], "--k must be >= 1"),
        (["eval", "RUN", "--precision", "fp16"], "invalid choice: 'fp16'"),
        (["sample", "RUN", "--n", "0"], "--n must be >= 1"),
        (["sample", "RUN", "--out", "/no/such/dir/x.png"], "does not exist"),
        (["train", "--frobnicate"], "unrecognized arguments"),
        (["nosuchcommand"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, cli_run, tmp_path, capsys):
    import numpy as np

    big = tmp_path / "big.npy"
    np.save(big, np.linspace(-2, 2, 4 * 9, dtype=np.float32).reshape(4, 3, 3))
    (tmp_path / "empty").mkdir()
    subs = {"BIG": str(big), "EMPTY": str(tmp_path / "empty"), "RUN": str(cli_run)}
    args = [a.replace("data.path=BIG", f"data.path={big}") for a in args]
    args = [subs.get(a, a) for a in args]
    if args[0] == "train" and "--frobnicate" not in args:
        args = ["train", *TINY, *args[1:], "--out", str(tmp_path / "r")]  # the bad value last wins
    if "likelihood.name=bernoulli" in args:
        args.append("data.binarize=none")
    before = snapshot(cli_run)
    assert_user_error(in_process(capsys, *args), needle)
    assert snapshot(cli_run) == before


def test_a_user_error_from_a_real_process_has_no_traceback(tmp_path):
    """The in-process cases above, checked once end to end through the interpreter."""
    assert_user_error(reparam("train", *TINY, "latent.dimm=3", "--out", str(tmp_path / "r")), "latent.dimm")
    assert not (tmp_path / "r").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 160 KiB tmpfs: room for the config, not for the checkpoints."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk_is_one_line_and_leaves_no_partial_file(tiny_disk):
    proc = reparam("train", *TINY, "model.hidden=[256]", "--out", str(tiny_disk / "run"))
    assert_user_error(proc, "No space left on device")
    leftovers = [p.name for p in tiny_disk.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "seed=-1"], "seed must be an integer in [0, 2**63)"),
        (["train", "seed=99999999999999999999999"], "seed must be an integer in [0, 2**63)"),
        (["train", "train.threads=100000"], "exceeds this machine's"),
        (["train", "latent.dim=100000000000"], "out of memory"),
        (["train", "CONFIG_DIR"], "is a folder; name a .toml file"),
        (["train", "--resume", "RUN", "--out", "ELSEWHERE"], "--out and --overwrite do not apply"),
        (["train", "--resume", "RUN", "--overwrite"], "--out and --overwrite do not apply"),
        (["train", "--resume", "FILE"], "is a file, not a run folder"),
        (["eval", "FILE"], "is a file, not a run folder"),
        (["sample", "RUN", "--seed", "99999999999999999999999"], "--seed must be an integer in [0, 2**63)"),
        (["sample", "RUN", "--seed", "-1"], "--seed must be an integer in [0, 2**63)"),
        (["sample", "RUN", "--out", "CONFIG_DIR"], "is a folder, not a file"),
        (["report", "RUN", "--seed", "18446744073709551616"], "--seed must be an integer in [0, 2**63)"),
        (["report", "RUN", "--out", "CONFIG_DIR"], "is a folder, not a file"),
    ],
)
def test_more_bad_input_is_one_line_and_exit_2(args, needle, cli_run, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("not a run")
    subs = {"RUN": str(cli_run), "CONFIG_DIR": str(tmp_path / "folder"), "ELSEWHERE": str(tmp_path / "other"), "FILE": str(tmp_path / "file.txt")}
    args = [subs.get(a, a) for a in args]
    if args[0] == "train" and "--resume" not in args:
        args = ["train", *TINY, *args[1:], "--out", str(tmp_path / "r")]
    before = snapshot(cli_run)
    assert_user_error(in_process(capsys, *args), needle)
    assert snapshot(cli_run) == before
    assert not (tmp_path / "r").exists() and not (tmp_path / "other").exists() and not list((tmp_path / "folder").iterdir())


def test_a_batch_larger_than_the_data_is_said_in_one_line_and_in_the_summary(tmp_path):
    """train.batch_size beyond the training set is not silently cut to it: one warning line on
    stderr (no source path, no traceback), the same text in summary.json, the true batch there."""
    out = tmp_path / "run"
    proc = reparam("train", *TINY, "train.epochs=1", "train.eval_k=0", "train.batch_size=100000", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("reparam: warning: train.batch_size=100000 is larger than the 1,500 training examples")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["warnings"] == [said[0].removeprefix("reparam: warning: ")]
    assert (summary["global_batch"], summary["steps"]) == (1500, 1)


def test_the_default_batch_on_a_small_set_is_cut_quietly(tmp_path):
    """The default train.batch_size (not asked for) on 20 training images: no warning, the true batch in the summary."""
    import warnings

    from reparam.train import train
    from tests.conftest import tiny_config
    from tests.test_data import keras_npz

    cfg = tiny_config("data.name=file", f"data.path={keras_npz(tmp_path / 'k.npz')}", "train.epochs=1", "train.eval_k=0")
    assert cfg.train.batch_size > 20
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(cfg, tmp_path / "run")
    assert not [w for w in caught if "batch_size" in str(w.message)]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["global_batch"], summary["steps"], summary.get("warnings")) == (20, 1, None)


# --- --out: never a device, a FIFO or someone else's file ------------------------------------------


@pytest.fixture
def special_files(tmp_path) -> tuple[Path, Path]:
    """A scratch character device (the numbers of a null device, 1:3) and a FIFO, both made in
    tmp_path for the test: the system's own are never touched."""
    node, fifo = tmp_path / "node", tmp_path / "fifo"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(fifo)
    return node, fifo


def assert_untouched(node: Path, fifo: Path) -> None:
    assert stat.S_ISCHR(node.lstat().st_mode) and node.lstat().st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert not [p.name for p in node.parent.iterdir() if p.name.endswith(".tmp")]


#: Every command that writes a file named by --out (OUT), on the run RUN.
OUT_COMMANDS = {
    "sample": ["sample", "RUN", "--n", "4", "--out", "OUT"],
    "report": ["report", "RUN", "--out", "OUT"],
    "comparison": ["report", "RUN", "RUN", "--out", "OUT"],
}


@pytest.mark.parametrize("command", OUT_COMMANDS)
def test_out_never_replaces_a_device_a_fifo_or_an_existing_file(command, tiny_run, special_files, tmp_path, capsys):
    """A special file is refused even with --overwrite; an existing file without it; nothing changes."""
    node, fifo = special_files
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"not reparam's")
    before = snapshot(tiny_run)
    cases = [(node, "is a character device"), (fifo, "is a FIFO"), (mine, "already exists")]
    for (target, needle), overwrite in [*((c, []) for c in cases), *((c, ["--overwrite"]) for c in cases[:2])]:
        args = [str(tiny_run) if a == "RUN" else str(target) if a == "OUT" else a for a in OUT_COMMANDS[command]]
        assert_user_error(in_process(capsys, *args, *overwrite), needle)
    assert_untouched(node, fifo)
    assert mine.read_bytes() == b"not reparam's" and snapshot(tiny_run) == before


def test_gradvar_never_replaces_a_device_a_fifo_or_an_existing_file(tiny_run, special_files, tmp_path, capsys):
    node, fifo = special_files
    mine, out = tmp_path / "mine", tmp_path / "out"
    mine.mkdir()
    (mine / "gradvar.json").write_text("not reparam's")
    out.mkdir()
    os.rename(node, out / "gradvar.png")  # a device where the figure would go
    os.rename(fifo, out / "gradvar.json")
    args = ["gradvar", str(tiny_run), "--replicates", "2", "--batch", "10"]
    assert_user_error(in_process(capsys, *args, "--out", str(mine)), "already exists")
    assert_user_error(in_process(capsys, *args, "--out", str(out), "--overwrite"), "is a FIFO")
    os.rename(out / "gradvar.json", tmp_path / "fifo")
    assert_user_error(in_process(capsys, *args, "--out", str(out), "--overwrite"), "is a character device")
    os.rename(out / "gradvar.png", node)
    assert_untouched(node, fifo)
    assert (mine / "gradvar.json").read_text() == "not reparam's" and not (mine / "gradvar.png").exists()


def test_overwrite_replaces_a_file_and_the_run_folders_own_outputs_are_rewritten(tiny_run, tmp_path, capsys):
    """--overwrite replaces an existing file; RUN/samples.png, which reparam wrote, is rewritten at
    every call without it; a special file there is refused all the same."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"old")
    assert in_process(capsys, "sample", str(run), "--n", "4", "--out", str(mine), "--overwrite").returncode == 0
    assert mine.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for _ in range(2):
        assert in_process(capsys, "sample", str(run), "--n", "4").returncode == 0
    (run / "samples.png").unlink()
    os.mkfifo(run / "samples.png")
    assert_user_error(in_process(capsys, "sample", str(run), "--n", "4"), "is a FIFO")
    assert stat.S_ISFIFO((run / "samples.png").lstat().st_mode)
