"""Training entry points: ``train`` a configured VAE, ``resume`` a run folder.

The loop itself is ``loop.Trainer``. Under torchrun (RANK/WORLD_SIZE set) each process
joins the process group after its data are loaded and checked; only rank 0 creates and
writes the run folder.
"""

from __future__ import annotations

import shutil
import sys
import threading
import warnings
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import checkpoint, devices, distributed, runs
from .. import data as data_mod
from ..data import python as python_data
from ..distributed import Dist
from ..errors import ConfigError
from ..evaluate import gradvar
from ..model import VAE, HierarchicalVAE, build
from ..report import write_report
from . import memory, tracking
from .finish import finish
from .loop import Hook, Trainer


@contextmanager
def stop_on_signals(trainer):
    """SIGINT/SIGTERM ask the trainer (a ``Trainer`` or a ``stacked.Stack``) to finish its step, checkpoint and stop."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        trainer.stop_signal = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _setup(cfg, model: VAE | None = None, columns=None, data: data_mod.Data | None = None) -> tuple[data_mod.Data, VAE | HierarchicalVAE, Dist]:
    """Seed, load and check the data (or take ``data``, loaded by the same config: a stack's
    members share it), build (or take) the model, join the process group.

    ``columns``: a resumed table run's saved columns (``reparam.tables.Columns``), so its
    rows are coded as before; a new table run infers them."""
    torch.manual_seed(cfg.seed)
    devices.set_threads(cfg.train.threads)
    dist = distributed.from_env()
    device = devices.resolve_device(cfg.train.device, dist.local_rank)
    devices.check_precision(cfg.train.precision, device)
    if data is None:
        data = data_mod.load(cfg.data) if columns is None else data_mod.load(cfg.data, columns)
    data_mod.check_labels(cfg, data)
    if dist.enabled and cfg.data.labeled:
        raise ConfigError("data.labeled (semi-supervised M2) trains in one process; run it without torchrun")
    distributed.check_sizes(dist, len(data.train), len(data.test), cfg.train.batch_size, None if data.valid is None else len(data.valid))
    layout = None if data.columns is None else data.columns.layout()
    classes = None
    if cfg.model.condition == "label":
        assert data.classes is not None  # data_mod.check_labels above
        classes = len(data.classes)
    if model is None:
        held = data.train.nbytes // (dist.world if cfg.data.shard else 1) + data.test.nbytes  # data.shard: a rank's part of the training set
        memory.check(cfg, data.x_shape, device, layout, classes, dist, held)  # before anything is built or written
    vae = (build(cfg, data.x_shape, columns=layout, classes=classes, train_x=data.train) if model is None else model).to(device)
    vae.head.check_data(data_mod.levels(data.train), "the training set")  # the values held, not a float copy of them all
    vae.head.check_data(data.test, "the test set")
    distributed.init(dist, device)
    if dist.enabled:
        torch.manual_seed(distributed.rank_seed(cfg.seed, dist.rank))  # each rank its own z noise
    return data, devices.prepare(vae, cfg.train.channels_last, cfg.train.compile), dist


def announce(cfg, dist: Dist, opening: str | None = None) -> None:
    """Rank 0 says ``opening`` (what it trains, once every input has been read and checked, so a bad
    input is still one line) and how the work is split (the global batch and learning rate equal one process's)."""
    if opening and dist.is_main:
        print(f"reparam: {opening}", file=sys.stderr, flush=True)
    if dist.enabled and dist.is_main:
        bs = cfg.train.batch_size
        print(
            f"reparam: {dist.world} processes; global batch {bs} (about {bs // dist.world} per process), "
            f"learning rate {cfg.train.lr:g} for that global batch, as with one process",
            file=sys.stderr,
        )


def _trainer(cfg, model: VAE | HierarchicalVAE, data: data_mod.Data, run_dir: Path, hooks: Iterable[Hook], dist: Dist) -> Trainer:
    trainer = Trainer(cfg, model, data, run_dir, hooks, dist)
    trainer.hooks += gradvar.training_hooks(trainer)  # train.gradvar_every
    return trainer


def _run(trainer: Trainer, progress: bool, report: bool = True) -> Path:
    with stop_on_signals(trainer):
        trainer.fit(progress)
    return wrap_up(trainer, progress, report)


def wrap_up(trainer: Trainer, progress: bool, report: bool = True) -> Path:
    """After training: the final evaluation, summary.json and pictures, then the report."""
    finish(trainer, progress)
    trainer.batches.release()  # the training images are not needed any more: the report's memory
    if report and trainer.cfg.train.report and trainer.dist.is_main:
        write_report(trainer.run_dir, seed=trainer.cfg.seed, source=trainer.held_out.data, progress=progress)
    distributed.barrier(trainer.dist)  # every file is written before any rank returns
    return trainer.run_dir


def train(cfg, out: str | Path, overwrite: bool = False, hooks: Iterable[Hook] = (), progress: bool | None = None, model: VAE | None = None,
          opening: str | None = None, data=None) -> Path:  # fmt: skip
    """Train the configured VAE (or ``model``, e.g. with your own networks); returns the run folder.

    ``data``: images given in Python instead of the config's source: tensors, numpy arrays or a
    ``torch.utils.data.Dataset``, one set split by ``data.test_fraction`` or a pair ``(train,
    test)``, or a dict laid out as an .npz (``reparam.data.python``); the run records
    ``data.name=python`` and none of the images, so commands that read its data again refuse it.

    ``opening``: a line said on stderr once the data are read, the model built and the run folder
    prepared, before the first step (the command line's "training a VAE on ...").

    ``cfg`` is a validated ``reparam.config.Config``. A run of your own networks cannot be
    rebuilt from config.json, so it gets no report; load its weights into your VAE with
    ``safetensors.torch.load_file(RUN / "model.safetensors")``.
    """
    custom = model is not None
    if custom and cfg.train.report:
        warnings.warn("train.report skipped: a VAE with your own networks cannot be rebuilt from config.json", stacklevel=2)
    tracking.check(cfg.train.log)
    devices.set_threads(cfg.train.threads, fresh=True)
    if data is not None:
        python_data.choose(cfg.data)
        data = python_data.given(data, cfg.data)
    data, vae, dist = _setup(cfg, model, data=data)
    try:
        run_dir = Path(out)
        fresh = dist.is_main and not run_dir.exists()
        if dist.is_main:
            run_dir = runs.prepare_run_dir(out, overwrite)
        try:
            with tracking.session(cfg.train.log if dist.is_main else (), cfg.to_dict(), run_dir) as trackers:
                if dist.is_main:
                    write_files(run_dir, cfg, data)
                distributed.barrier(dist)
                announce(cfg, dist, opening)
                trainer = _trainer(cfg, vae, data, run_dir, [*hooks, *trackers], dist)
                del data  # the trainer holds what it needs; the rest can go when it lets go
                return _run(trainer, cfg.train.progress if progress is None else progress, report=not custom)
        except tracking.TrackingError:
            if fresh and not (run_dir / runs.CONFIG).exists():  # a tracker refused to start: the folder holds its files at most
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    finally:
        distributed.shutdown(dist)


def resume(run_dir: str | Path, epochs: int | None = None, hooks: Iterable[Hook] = (), progress: bool | None = None,
           budget: str | float | None = None, opening: str | None = None, data=None) -> Path:  # fmt: skip
    """Continue a run from its newest checkpoint; with ``epochs`` (``budget``), train up to
    that many epochs (that much training time, counted from the run's start). ``data``: a run
    trained on images given in Python (``data.name=python``) takes them again here, as ``train`` did.

    A run that stopped before its first checkpoint (``runs.untrained``: killed, out of memory,
    a full disk) starts from step 0 with its config.json, as ``train`` would have. A finished
    run (its summary written, its epochs or budget reached) is left as it is: nothing is
    evaluated or written again, and one line on stderr says how to train it longer.
    """
    run_dir = runs.check_run_dir(run_dir)
    cfg = runs.read_config(run_dir)
    if runs.untrained(run_dir):
        extend(cfg, epochs, budget, 0)
        return train(cfg, run_dir, overwrite=True, hooks=hooks, progress=progress, opening=opening, data=data)
    state = checkpoint.latest_state(run_dir)
    extend(cfg, epochs, budget, state["meta"]["epoch"])
    if finished(cfg, state["meta"]) and (run_dir / runs.SUMMARY).is_file():
        print(finished_note(run_dir, cfg, state["meta"]), file=sys.stderr)
        return run_dir
    tracking.check(cfg.train.log)
    if data is not None:
        python_data.choose(cfg.data)
        data = python_data.given(data, cfg.data)
    data, model, dist = _setup(cfg, columns=runs.read_columns(run_dir, cfg), data=data)
    try:
        with tracking.session(cfg.train.log if dist.is_main else (), cfg.to_dict(), run_dir) as trackers:
            if (epochs is not None or budget is not None) and dist.is_main:
                runs.write_json(run_dir / runs.CONFIG, cfg.to_dict())
            announce(cfg, dist, opening)
            trainer = _trainer(cfg, model, data, run_dir, [*hooks, *trackers], dist)
            del data
            restore(trainer, state)
            return _run(trainer, cfg.train.progress if progress is None else progress)
    finally:
        distributed.shutdown(dist)


def write_files(run_dir: Path, cfg, data: data_mod.Data) -> None:
    """The run folder's own files beside its checkpoints: config.json, a table's columns, a conditional run's classes."""
    runs.write_json(run_dir / runs.CONFIG, cfg.to_dict())
    if data.columns is not None:
        runs.write_columns(run_dir, data.columns)
    if cfg.model.condition == "label":
        runs.write_json(run_dir / runs.CLASSES, {"classes": data.classes})


def restore(trainer: Trainer, state: dict) -> None:
    """Put a checkpoint's training state back, and the held-out records of metrics.jsonl up to its step."""
    trainer.load_state_dict(state)
    trainer.held_out.records = [m for m in runs.read_jsonl(trainer.run_dir / runs.METRICS) if m["step"] <= trainer.step]


def extend(cfg, epochs: int | None, budget: str | float | None, done: int) -> None:
    """A resume's ``train.epochs`` (no fewer than the ``done`` epochs) and ``train.budget``, checked."""
    if epochs is not None:
        if epochs < done:
            raise ConfigError(f"train.epochs={epochs} is fewer than the {done} epochs already done")
        cfg.train.epochs = epochs
    if budget is not None:
        cfg.train.budget = budget
    cfg.train.validate()


def finished(cfg, meta: dict) -> bool:
    """Whether a checkpoint is the end of training: its epochs, or its budget, reached, or stopped early (``train.early_stop``)."""
    budget = cfg.train.budget_seconds
    return meta["epoch"] >= cfg.train.epochs or budget > 0 and meta["seconds"] >= budget or bool(meta.get("stopped_early"))


def finished_note(run_dir: Path, cfg, meta: dict) -> str:
    """What a plain --resume of a finished run says: nothing rewritten, and how to go on."""
    if meta.get("stopped_early"):
        return (f"reparam: {run_dir} already finished: it stopped early at epoch {meta['epoch']} (train.early_stop={cfg.train.early_stop}); "
                f"nothing was rewritten. To evaluate it again: reparam eval {run_dir}")  # fmt: skip
    if cfg.train.budget_seconds and meta["seconds"] >= cfg.train.budget_seconds:
        done, longer = f"its train.budget={cfg.train.budget}", f"train.budget=T (more than {cfg.train.budget})"
    else:
        done, longer = f"its {meta['epoch']} epoch{'s' if meta['epoch'] != 1 else ''}", f"train.epochs=N (more than {meta['epoch']})"
    return (f"reparam: {run_dir} already finished {done}; nothing was rewritten. To train it longer: reparam train --resume "
            f"{run_dir} {longer}; to evaluate it again: reparam eval {run_dir}")  # fmt: skip
