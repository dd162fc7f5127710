"""The run folder: atomic writes, the public load API, and checkpoint validation."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

import reparam
from reparam import runs
from reparam.errors import RunError


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.json"
    runs.write_json(target, {"a": 1})
    runs.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        runs.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_load_gives_the_public_contract(tiny_run):
    model = reparam.load(tiny_run)
    x = torch.rand(4, 8, 8).bernoulli()
    q = model.posterior(x)
    z = q.rsample((3,))
    px = model.likelihood(z)
    assert z.shape == (3, 4, model.prior().event_shape[0])
    assert px.batch_shape == (3, 4) and px.event_shape == (8, 8)
    # anyone can compute their own bound from the three distributions
    log_w = px.log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)
    assert torch.isfinite(log_w).all()


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    return shutil.copytree(tiny_run, tmp_path / "copy")


def test_truncated_weights_are_refused(run_copy):
    w = run_copy / runs.WEIGHTS
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(RunError, match="not a valid safetensors"):
        reparam.load(run_copy)


def test_weights_of_the_wrong_shape_are_refused(run_copy):
    tensors = runs.load_tensors(run_copy / runs.WEIGHTS)
    name = next(iter(tensors))
    tensors[name] = torch.zeros(3, 3)
    save_file(tensors, run_copy / runs.WEIGHTS)
    with pytest.raises(RunError, match="has shape"):
        reparam.load(run_copy)


def test_missing_key_is_refused(run_copy):
    tensors = runs.load_tensors(run_copy / runs.WEIGHTS)
    tensors.pop(next(iter(tensors)))
    save_file(tensors, run_copy / runs.WEIGHTS)
    with pytest.raises(RunError, match="missing"):
        reparam.load(run_copy)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_pickle_payload_is_refused_without_running_it(run_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (run_copy / runs.WEIGHTS).write_bytes(pickle.dumps({"w": _Payload()}))
    with pytest.raises(RunError, match="not a valid safetensors"):
        reparam.load(run_copy)
    assert not (tmp_path / "PWNED").exists()


def test_corrupt_config_is_refused(run_copy):
    (run_copy / runs.CONFIG).write_text("{not json")
    with pytest.raises(RunError, match="not valid JSON"):
        reparam.load(run_copy)
    (run_copy / runs.CONFIG).write_text(json.dumps({"latent": {"dim": "x"}}))
    with pytest.raises(RunError, match="latent.dim"):
        reparam.load(run_copy)


def test_run_without_checkpoint_is_refused(run_copy):
    (run_copy / runs.STATE_JSON).unlink()
    with pytest.raises(RunError, match="no checkpoint"):
        reparam.load(run_copy)


def test_read_only_output_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(RunError, match="cannot write"):
            runs.prepare_run_dir(ro / "run", overwrite=False)
    finally:
        ro.chmod(0o700)


def test_output_below_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="cannot write"):
        runs.prepare_run_dir(tmp_path / "file" / "run", overwrite=False)
    with pytest.raises(RunError, match="not a folder"):
        runs.prepare_run_dir(tmp_path / "file", overwrite=False)


# --- classes.json: one name per class, or one line that says so ----------------------------------

CLASSES_MUST = 'must hold {"classes": [...]}, one name (a string) per class'


@pytest.mark.parametrize(
    "text, needle",
    [(json.dumps([str(c) for c in range(10)]), CLASSES_MUST), (json.dumps("0123456789"), CLASSES_MUST), ("null", CLASSES_MUST),
     (json.dumps({"names": ["a"]}), CLASSES_MUST), (json.dumps({"classes": []}), CLASSES_MUST),
     (json.dumps({"classes": [0, 1]}), CLASSES_MUST), (json.dumps({"classes": ["a", "a"]}), "names class a twice"),
     (json.dumps({"classes": ["a", "b", "c"]}), "names 3 classes; the run's weights were trained on 10")],
)  # fmt: skip
def test_a_damaged_classes_json_is_named_in_one_line(text, needle, tiny_conditional_run, tmp_path, capsys):
    """A JSON list (or any other shape), or the wrong number of names: every command that loads the
    run says what classes.json must hold, and blames neither config.json nor the weights."""
    from tests.helpers import assert_user_error, in_process

    run = shutil.copytree(tiny_conditional_run, tmp_path / "run")
    (run / runs.CLASSES).write_text(text)
    with pytest.raises(RunError, match="classes.json") as info:
        reparam.load(run)
    assert needle in str(info.value) and "config.json" not in str(info.value)
    for command in (["sample", str(run), "--out", str(tmp_path / "s.png")], ["eval", str(run), "--k", "2"],
                    ["report", str(run), "--out", str(tmp_path / "r.html")], ["explore", str(run), "--port", "0"]):  # fmt: skip
        assert_user_error(in_process(capsys, *command), needle)
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "r.html").exists()


# --- outputs: never a device, a FIFO or an existing file without overwrite ------------------------


@pytest.fixture
def special_files(tmp_path):
    """A scratch character device (1:3, the numbers of a null device) and a FIFO made in tmp_path:
    the system's own are never touched."""
    import stat

    node, fifo = tmp_path / "node", tmp_path / "fifo"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(fifo)
    return node, fifo


def test_atomic_write_never_renames_over_a_device_or_a_fifo(special_files, tmp_path):
    """The last guard under every write of reparam's (checkpoints, the run's own outputs)."""
    import stat

    from reparam.errors import OutputError

    node, fifo = special_files
    for path, kind in [(node, "character device"), (fifo, "FIFO")]:
        with pytest.raises(OutputError, match=f"is a {kind}, not a regular file"):
            runs.atomic_write_bytes(path, b"x")
    assert stat.S_ISCHR(node.lstat().st_mode) and node.lstat().st_rdev == os.makedev(1, 3) and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "node"]


def test_check_output_refuses_what_it_must_not_replace(special_files, tmp_path):
    from reparam.errors import OutputError
    from reparam.files import check_output

    node, fifo = special_files
    (tmp_path / "mine.txt").write_text("mine")
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    for path, overwrite, needle in [(node, True, "is a character device"), (fifo, True, "is a FIFO"), (tmp_path / "mine.txt", False, "already exists"),
                                    (tmp_path / "dangling", False, "already exists"), (tmp_path / "folder", True, "is a folder, not a file"),
                                    (tmp_path / "no" / "x.png", True, "does not exist")]:  # fmt: skip
        with pytest.raises(OutputError, match=needle):
            check_output(path, overwrite)
    assert check_output(tmp_path / "mine.txt", overwrite=True) == tmp_path / "mine.txt"
    assert check_output(tmp_path / "new.txt", overwrite=False) == tmp_path / "new.txt"


def test_atomic_write_fsyncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    """The file is synced before the rename, its folder after it: a power cut cannot lose the rename."""
    import stat

    target, real, synced = tmp_path / "f.bin", os.fsync, []

    def record(fd):
        synced.append(("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file", target.exists()))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    runs.atomic_write_bytes(target, b"x")
    assert synced == [("file", False), ("folder", True)]


def test_weights_are_read_through_a_memory_map_not_whole_into_memory(run_copy, monkeypatch):
    from pathlib import Path

    expected = reparam.load(run_copy).state_dict()

    def whole(self):
        raise AssertionError(f"{self} read whole into memory")

    monkeypatch.setattr(Path, "read_bytes", whole)
    loaded = reparam.load(run_copy).state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
