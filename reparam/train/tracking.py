"""Experiment tracking on the trainer's hook: TensorBoard, MLflow and Weights & Biases.

``train.log`` names the trackers (several at once). Each one gets the resolved config once, as
hyperparameters (``train.lr``, ``latent.family``, ...); after every held-out evaluation, the
record's numbers (the keys of metrics.jsonl) as scalars at the record's ``step``; and at the
end the run's pictures (samples.png, reconstructions.png) and report.html when it was
written. Each backend is an optional extra, imported only when named, and checked before
anything is written (``check``: the extra installed; MLflow's store opens and its server
answers within ``PROBE_SECONDS``). Where each one writes follows its own conventions:

- ``tensorboard``: event files in ``RUN/tensorboard`` (``tensorboard --logdir RUN``); the
  pictures as images, the report as a text entry holding its path (TensorBoard keeps no files);
  the hyperparameters come with the first evaluation, whose numbers they declare as the
  metrics the HParams tab sorts and compares runs by;
- ``mlflow``: ``MLFLOW_TRACKING_URI`` (MLflow's default otherwise), experiment
  ``MLFLOW_EXPERIMENT_NAME`` (default ``reparam``), one MLflow run named after the run folder;
- ``wandb``: project ``WANDB_PROJECT`` (default ``reparam``), files under ``WANDB_DIR`` or the
  run folder; ``WANDB_MODE=offline`` keeps everything on disk for ``wandb sync``.

A resumed run continues the same MLflow and W&B runs: their ids are kept in
``RUN/tracking.json``.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Interrupted, ReparamError
from ..files import read_json, write_json
from ..registry import Registry

TRACKING_JSON = "tracking.json"
#: Seconds a tracking server has to accept a connection before training is refused.
PROBE_SECONDS = 3.0
ARTIFACTS = ("samples.png", "reconstructions.png", "report.html")
DEFAULT_PROJECT = "reparam"


class TrackingError(ReparamError):
    """A tracking backend that refused to start (no login, an unreachable server, a bad URI)."""


class Tracker:
    """One backend. ``start`` returns the backend's id for this run (kept for a resume)."""

    name: str
    module: str  # what must import for the backend to work
    extra: str  # reparam[extra] installs it

    @classmethod
    def preflight(cls) -> None:
        """TrackingError (one line) when the backend cannot start here; before anything is written."""

    def start(self, run_dir: Path, config: dict[str, Any], resume_id: str | None) -> str:
        raise NotImplementedError

    def __call__(self, record: dict) -> None:
        """Log one held-out evaluation (a metrics.jsonl record)."""
        raise NotImplementedError

    def finish(self, files: list[Path], status: str) -> None:
        """Log ``files`` as the run's artifacts and close; ``status``: finished, failed or killed."""
        raise NotImplementedError


TRACKERS: Registry[type[Tracker]] = Registry("train.log tracker")


def check(names: Sequence[str]) -> None:
    """ConfigError for an unknown or repeated tracker, or one whose extra is not installed."""
    for name in names:
        TRACKERS.lookup(name)
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ConfigError(f"train.log names {repeated[0]!r} twice; name each tracker once")
    for name in names:
        tracker = TRACKERS[name]
        try:
            importlib.import_module(tracker.module)
        except ImportError:
            raise ConfigError(f"train.log={name} needs the {tracker.module} package: pip install 'reparam[{tracker.extra}]'") from None
    for name in names:
        TRACKERS[name].preflight()


def unreachable(uri: str, timeout: float = PROBE_SECONDS) -> str | None:
    """Why the http(s) server of ``uri`` does not accept a connection within ``timeout`` s, or None if it does."""
    parts = urllib.parse.urlsplit(uri)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.create_connection((parts.hostname or "localhost", port), timeout=timeout).close()
    except (OSError, ValueError) as e:
        return "timed out" if isinstance(e, TimeoutError) else getattr(e, "strerror", None) or str(e) or type(e).__name__
    return None


def scalars(record: dict) -> dict[str, float]:
    """The record's numbers, ``step`` aside (it is the x axis); booleans and texts are left out."""
    return {k: float(v) for k, v in record.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """{"train": {"lr": 0.001}, "seed": 0} -> {"train.lr": 0.001, "seed": 0}; lists and tables as JSON text."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in flatten(value).items()})
        else:
            out[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@contextmanager
def session(names: Sequence[str], config: dict[str, Any], run_dir: Path) -> Iterator[list[Tracker]]:
    """Start the named trackers, yield them as hooks, then log the artifacts and close them.

    An exception inside the block closes them as failed (killed for an interrupt) and
    propagates; a backend that cannot start raises TrackingError in one line.
    """
    ids = read_json(run_dir / TRACKING_JSON) if names and (run_dir / TRACKING_JSON).exists() else {}
    started: list[Tracker] = []
    try:
        for name in names:
            tracker = TRACKERS[name]()
            try:
                ids[name] = tracker.start(run_dir, config, ids.get(name))
            except Exception as e:  # third-party start-up: a login, a server, a URI
                raise TrackingError(f"cannot start train.log={name}: {_first_line(e)}") from None
            started.append(tracker)
        if names:
            write_json(run_dir / TRACKING_JSON, ids)
        yield started
    except BaseException as e:
        for tracker in started:
            tracker.finish([], "killed" if isinstance(e, (Interrupted, KeyboardInterrupt)) else "failed")
        raise
    files = [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]
    for tracker in started:
        tracker.finish(files, "finished")


@TRACKERS.register("tensorboard")
class TensorBoard(Tracker):
    """Event files in RUN/tensorboard: scalars, the config as hparams and text, the pictures as images."""

    module, extra = "tensorboard", "tensorboard"

    def start(self, run_dir: Path, config: dict[str, Any], resume_id: str | None) -> str:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.step = 0
        self.hparams: dict[str, Any] | None = flatten(config)  # written with the first record, which names the metrics
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, sort_keys=True) + "\n```", 0)
        return str(run_dir / "tensorboard")

    def __call__(self, record: dict) -> None:
        from torch.utils.tensorboard.summary import hparams

        self.step = int(record["step"])
        values = scalars(record)
        if self.hparams is not None:  # the HParams tab ranks runs by the metrics its experiment declares: this record's scalars
            events = self.writer.file_writer
            assert events is not None  # SummaryWriter opens it in __init__
            for summary in hparams(self.hparams, dict.fromkeys(values, 0.0)):  # experiment, session start and end
                events.add_summary(summary)
            self.hparams = None
        for key, value in values.items():
            self.writer.add_scalar(key, value, self.step)
        self.writer.flush()

    def finish(self, files: list[Path], status: str) -> None:
        import numpy as np
        from PIL import Image

        for path in files:
            if path.suffix == ".png":
                with Image.open(path) as im:
                    self.writer.add_image(path.stem, np.asarray(im.convert("RGB")), self.step, dataformats="HWC")
            else:
                self.writer.add_text(path.stem, str(path.resolve()), self.step)
        self.writer.add_text("status", status, self.step)
        self.writer.close()


@TRACKERS.register("mlflow")
class MLflow(Tracker):
    """One MLflow run: params (the flattened config), metrics per step, the files as artifacts."""

    module, extra = "mlflow", "mlflow"
    STORES = "MLFLOW_TRACKING_URI=http://HOST:PORT (a server) or MLFLOW_TRACKING_URI=file:///FOLDER with MLFLOW_ALLOW_FILE_STORE=true"

    @classmethod
    def preflight(cls) -> None:
        """The tracking URI's server answers (``PROBE_SECONDS``; MLflow's own retries wait
        minutes), and its store opens: MLflow refuses a file store without
        MLFLOW_ALLOW_FILE_STORE=true, and its default SQLite file without its full package."""
        import mlflow
        from mlflow import MlflowClient

        uri = mlflow.get_tracking_uri()
        scheme = urllib.parse.urlsplit(uri).scheme
        why = unreachable(uri) if scheme in ("http", "https") else None
        if why:
            raise TrackingError(f"cannot reach the MLflow tracking server at {uri} ({why}); start it, or set MLFLOW_TRACKING_URI to one that answers")
        try:
            MlflowClient(uri)  # opens the store
        except Exception as e:
            if "MLFLOW_TRACKING_URI" not in os.environ:
                why = "needs the full mlflow package (mlflow-skinny cannot open it)" if "unsupported URI" in str(e) else f"does not open ({_first_line(e)})"
                raise TrackingError(f"train.log=mlflow: no MLflow tracking store is set, and MLflow's default, {uri}, {why}; set {cls.STORES}") from None
            if scheme in ("", "file") and "MLFLOW_ALLOW_FILE_STORE" in str(e):
                raise TrackingError(f"train.log=mlflow: MLflow opens the file store {uri} only with MLFLOW_ALLOW_FILE_STORE=true set; "
                                    "set it, or MLFLOW_TRACKING_URI=http://HOST:PORT for a server") from None  # fmt: skip
            raise TrackingError(f"cannot start train.log=mlflow at {uri}: {_first_line(e)}") from None

    def start(self, run_dir: Path, config: dict[str, Any], resume_id: str | None) -> str:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient()
        run = self._resumable(resume_id)
        if run is None:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_PROJECT)
            experiment = self.client.get_experiment_by_name(name)
            eid = experiment.experiment_id if experiment else self.client.create_experiment(name)
            run = self.client.create_run(eid, run_name=run_dir.name, tags={"reparam.run_dir": str(run_dir.resolve())})
        else:
            self.client.update_run(run.info.run_id, status="RUNNING")
        self.run_id = run.info.run_id
        logged = run.data.params  # MLflow never changes a logged param: a resume adds only new keys
        params = [Param(k, str(v)) for k, v in flatten(config).items() if k not in logged]
        for i in range(0, len(params), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        return self.run_id

    def _resumable(self, run_id: str | None):
        """The MLflow run a resumed run continues, or None (none yet, or not in this tracking store)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id) if run_id else None
        except MlflowException:
            return None

    def __call__(self, record: dict) -> None:
        import time

        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(record["step"])
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in scalars(record).items()])

    def finish(self, files: list[Path], status: str) -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status=status.upper())


@TRACKERS.register("wandb")
class WandB(Tracker):
    """One W&B run: the config, history per step, the pictures as images and the files as an artifact."""

    module, extra = "wandb", "wandb"

    def start(self, run_dir: Path, config: dict[str, Any], resume_id: str | None) -> str:
        import wandb

        settings = wandb.Settings(console="off", silent=True, disable_git=True, save_code=False)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT), name=run_dir.name, config=config,
            dir=os.environ.get("WANDB_DIR", str(run_dir)), id=resume_id, resume="allow" if resume_id else None, settings=settings,
        )  # fmt: skip
        if resume_id:
            self.run.config.update(config, allow_val_change=True)  # a resume may extend train.epochs
        self.step, self.run_dir = 0, run_dir
        return self.run.id

    def __call__(self, record: dict) -> None:
        self.step = int(record["step"])
        self.run.log(scalars(record), step=self.step)

    def finish(self, files: list[Path], status: str) -> None:
        import wandb

        if files:
            self.run.log({p.stem: wandb.Image(str(p)) for p in files if p.suffix == ".png"}, step=self.step)
            artifact = wandb.Artifact(f"run-{self.run.id}", type="reparam-run")
            for path in files:
                artifact.add_file(str(path))
            self.run.log_artifact(artifact)
        self.run.finish(exit_code=0 if status == "finished" else 1)
