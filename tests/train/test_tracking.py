"""train.log: TensorBoard, MLflow and W&B runs, written offline and read back with each tool's own reader."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from reparam.errors import ConfigError
from reparam.train import resume, tracking, train
from tests.conftest import TINY, tiny_config
from tests.helpers import assert_user_error, in_process

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")

TRACKERS = ["tensorboard", "mlflow", "wandb"]


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """Every backend on local disk only: a file store for MLflow, W&B offline."""
    root = tmp_path_factory.mktemp("tracking")
    env = {
        "MLFLOW_TRACKING_URI": (root / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_EXPERIMENT_NAME": "tests",
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_PROJECT": "tests",
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("WANDB_DIR", raising=False)
        yield root


@pytest.fixture(scope="module")
def tracked(offline) -> Path:
    """One run logged to all three trackers at once, with its report."""
    cfg = tiny_config(f"train.log={json.dumps(TRACKERS)}", "train.report=true", "train.epochs=3")
    return train(cfg, offline / "run")


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_event_files_read_back(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(tracked / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    records = metrics(tracked)
    for key in ("test_elbo", "train_loss", "test_active_units", "lr", "epoch"):
        assert [(e.step, pytest.approx(e.value)) for e in events.Scalars(key)] == [(r["step"], r[key]) for r in records]
    assert {"samples", "reconstructions"} <= set(events.Tags()["images"])
    start = plugin_data_pb2.HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["train.epochs"].number_value == 3 and hparams["latent.family"].string_value == "gaussian"
    texts = {e.tensor_proto.string_val[0].decode() for e in events.Tensors("report/text_summary")}
    assert texts == {str((tracked / "report.html").resolve())}


def test_tensorboard_declares_the_metrics_its_hparams_tab_ranks_runs_by(tracked):
    """The HParams experiment names every scalar of an evaluation record as a metric (none
    declared: the tab shows the config but cannot sort or compare runs by any number)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(tracked / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    experiment = plugin_data_pb2.HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    declared = {m.name.tag for m in experiment.metric_infos}
    assert {"test_elbo", "test_kl", "test_log_px_z", "train_loss", "test_active_units"} <= declared
    assert declared == set(events.Tags()["scalars"]) == set(metrics(tracked)[0]) - {"step"}
    assert {h.name for h in experiment.hparam_infos} >= {"train.lr", "latent.family"}


def test_mlflow_file_store_reads_back(tracked):
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(json.loads((tracked / "tracking.json").read_text())["mlflow"])
    assert run.info.status == "FINISHED" and run.info.run_name == tracked.name
    assert run.data.params["train.epochs"] == "3" and run.data.params["model.hidden"] == "[32]"
    records = metrics(tracked)
    history = client.get_metric_history(run.info.run_id, "test_elbo")
    assert [(m.step, pytest.approx(m.value)) for m in history] == [(r["step"], r["test_elbo"]) for r in records]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"samples.png", "reconstructions.png", "report.html"}


def wandb_records(run_file: Path):
    """The protobuf records of an offline W&B run file (a LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2

    data, block = run_file.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            yield record
            chunk = b""


def test_wandb_offline_run_reads_back(tracked):
    run_id = json.loads((tracked / "tracking.json").read_text())["wandb"]
    [run_file] = (tracked / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    history, config, artifacts = [], {}, []
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
        elif kind in ("run", "config"):  # the config comes with the run record, updates in config records
            items = record.run.config.update if kind == "run" else record.config.update
            config.update({item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in items})
        elif kind == "artifact":
            artifacts.append({entry.path for entry in record.artifact.manifest.contents})
    records = metrics(tracked)
    scored = [h for h in history if "test_elbo" in h]
    assert [(h["_step"], pytest.approx(h["test_elbo"])) for h in scored] == [(r["step"], r["test_elbo"]) for r in records]
    last = history[-1]  # the pictures join the last evaluation's row, their files beside the run
    assert last["_step"] == records[-1]["step"] and last["samples._type"] == last["reconstructions._type"] == "image-file"
    assert (run_file.parent / "files" / last["samples.path"]).is_file()
    assert config["train"]["epochs"] == 3 and config["latent"]["family"] == "gaussian"
    assert artifacts == [{"samples.png", "reconstructions.png", "report.html"}]


def test_resume_continues_the_same_tracked_runs(offline):
    from mlflow import MlflowClient

    run = train(tiny_config("train.log=mlflow", "train.epochs=1"), offline / "resumed")
    first = json.loads((run / "tracking.json").read_text())
    resume(run, epochs=2, progress=False)
    assert json.loads((run / "tracking.json").read_text()) == first
    client = MlflowClient()
    steps = [m.step for m in client.get_metric_history(first["mlflow"], "test_elbo")]
    assert steps == [r["step"] for r in metrics(run)] and len(steps) == 2
    assert client.get_run(first["mlflow"]).info.status == "FINISHED"


def test_a_string_names_one_or_several_trackers():
    assert tiny_config("train.log=tensorboard").train.log == ["tensorboard"]
    assert tiny_config("train.log=tensorboard,mlflow").train.log == ["tensorboard", "mlflow"]
    assert tiny_config().train.log == []


@pytest.mark.parametrize(
    "names, needle",
    [(["neptune"], "unknown train.log tracker 'neptune'; valid: mlflow, tensorboard, wandb"),
     (["mlflow", "mlflow"], "train.log names 'mlflow' twice")],
)  # fmt: skip
def test_unknown_or_repeated_trackers_are_refused(names, needle):
    with pytest.raises(ConfigError, match=needle):
        tracking.check(names)


@pytest.mark.parametrize("name", TRACKERS)
def test_a_missing_extra_names_the_pip_command_and_writes_nothing(name, capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, name, None)  # import fails as if the package were absent
    out = tmp_path / "run"
    proc = in_process(capsys, "train", *TINY, f"train.log={name}", "--out", str(out))
    assert_user_error(proc, f"pip install 'reparam[{name}]'")
    assert not out.exists()



# --- MLflow: a server that does not answer, no store: one line, quickly, nothing written ------------


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_mlflow_server_that_does_not_answer_is_refused_at_once(capsys, monkeypatch, tmp_path):
    import time

    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "run"
    start = time.monotonic()
    proc = in_process(capsys, "train", *TINY, "train.log=mlflow", "--out", str(out))
    assert time.monotonic() - start < 20  # MLflow's own retries took 255 s
    assert_user_error(proc, f"cannot reach the MLflow tracking server at {uri}")
    assert "MLFLOW_TRACKING_URI" in proc.stderr and not out.exists()


def test_an_mlflow_file_store_without_its_opt_in_names_the_variable(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    proc = in_process(capsys, "train", *TINY, "train.log=mlflow", "--out", str(tmp_path / "run"))
    assert_user_error(proc, "MLFLOW_ALLOW_FILE_STORE=true")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_mlflow_without_a_store_says_how_to_configure_one(capsys, monkeypatch, tmp_path):
    """No MLFLOW_TRACKING_URI: MLflow's default is a SQLite file in the working folder, which
    the slim package (mlflow-skinny) cannot open."""
    import importlib.util

    if importlib.util.find_spec("sqlalchemy") is not None:
        pytest.skip("this MLflow opens its default SQLite store")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    proc = in_process(capsys, "train", *TINY, "train.log=mlflow", "--out", str(tmp_path / "run"))
    assert_user_error(proc, "no MLflow tracking store")
    assert "MLFLOW_TRACKING_URI=" in proc.stderr and "MLFLOW_ALLOW_FILE_STORE=true" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_tracker_that_fails_to_start_leaves_no_run_folder(capsys, monkeypatch, tmp_path):
    """TensorBoard starts and writes its files, then MLflow refuses (a login, a server error):
    the run folder this call created goes, TensorBoard's files with it."""

    def refuse(self, run_dir, config, resume_id):
        raise RuntimeError("permission denied for experiment reparam\nmore detail")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setattr(tracking.MLflow, "start", refuse)
    out = tmp_path / "run"
    proc = in_process(capsys, "train", *TINY, "train.log=tensorboard,mlflow", "--out", str(out))
    assert_user_error(proc, "cannot start train.log=mlflow: permission denied for experiment reparam")
    assert not out.exists()
