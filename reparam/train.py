"""The training loop: in-memory data batched by index, Adam, held-out evaluation, checkpoints.

The loop knows nothing about families, likelihoods or bounds: it calls the configured
objective, minimizes ``-bound.mean()``, and calls ``model.on_step`` for schedules. Its
whole state (weights, optimizer, RNGs, the epoch's data order and position) goes into
every checkpoint, so ``resume`` continues a killed run bit for bit (see checkpoint.py).
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from tqdm.auto import tqdm

from . import checkpoint, config, evaluate, objectives, pictures, runs
from . import data as data_mod
from .config import Config
from .errors import ConfigError, ReparamError
from .model import VAE, build

Hook = Callable[[dict], None]


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the run was checkpointed and can be resumed."""

    def __init__(self, run_dir: Path, step: int, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; resume with: reparam train --resume {run_dir}")
        self.exit_code = 128 + signum


class Diverged(ReparamError):
    """Non-finite steps kept coming after every allowed rollback."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA GPU is available; use train.device=cpu")
    return torch.device(name)


def make_optimizer(model: VAE, lr: float) -> torch.optim.Optimizer:
    """Adam, with the fused kernel where this torch build has it (fewer passes over the weights)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - older torch or device without it
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


class Trainer:
    """Runs ``cfg.train.epochs`` epochs and writes the run folder as it goes."""

    def __init__(self, cfg: Config, model: VAE, data: data_mod.Data, run_dir: Path, hooks: Iterable[Hook] = ()):
        self.cfg, self.model, self.run_dir, self.hooks = cfg, model, run_dir, list(hooks)
        self.device = next(model.parameters()).device
        self.train_x = data.train.to(self.device)
        self.test_x = data.test.to(self.device)
        self.objective = objectives.lookup(cfg.objective.name)
        self.opt = make_optimizer(model, cfg.train.lr)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.dynamic = cfg.data.binarize == "dynamic"
        self.step = self.epoch = self.pos = self.rollbacks = self.skipped_steps = self.bad_streak = 0
        self.perm: torch.Tensor | None = None  # this epoch's data order
        self.sums: dict[str, torch.Tensor] = {}  # running sums of this epoch's terms
        self.metrics: list[dict] = []
        self.stop_signal: int | None = None
        self.restore_clock(0.0)

    def elapsed(self) -> float:
        return round(self._offset + time.perf_counter() - self._clock, 3)

    def restore_clock(self, seconds: float) -> None:
        self._offset, self._clock = seconds, time.perf_counter()

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_x) / self.cfg.train.batch_size)

    def next_batch(self) -> torch.Tensor:
        """The batch at ``pos`` of this epoch's permutation, binarized afresh if dynamic."""
        if self.perm is None:
            self.perm = torch.randperm(len(self.train_x), generator=self.gen, device=self.device)
        bs = self.cfg.train.batch_size
        x = self.train_x[self.perm[self.pos * bs : (self.pos + 1) * bs]]
        return data_mod.binarize(x, self.gen) if self.dynamic else x

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """One optimizer step on x (B, *x_shape): batch-mean terms, or None if not finite."""
        kwargs = objectives.call_kwargs(self.cfg.objective, self.step)
        bound, terms = self.objective(self.model, x, **kwargs)
        loss = -bound.mean()  # the one reduction over the batch
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm = get_total_norm(grads)
        if not bool(torch.isfinite(loss.detach() + norm)):  # one sync per step
            return None
        if self.cfg.train.clip_grad:
            clip_grads_with_norm_(self.model.parameters(), self.cfg.train.clip_grad, norm)
        self.opt.step()
        return {"loss": loss.detach(), **{k: v.detach().mean() for k, v in terms.items()}}

    def advance(self) -> None:
        """Process one batch: step (or skip a non-finite one), then epoch-end and checkpoint duties."""
        out = self.train_step(self.next_batch())
        self.pos, self.step = self.pos + 1, self.step + 1
        self.model.on_step(self.step)
        if out is None:
            return self.on_bad_step()
        self.bad_streak = 0
        out["count"] = torch.ones(())
        for key, value in out.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        if self.pos >= self.steps_per_epoch:
            self.end_epoch()
        elif self.cfg.train.checkpoint_every and self.step % self.cfg.train.checkpoint_every == 0:
            self.checkpoint()

    def on_bad_step(self) -> None:
        """Count a skipped step; after max_bad_steps in a row, roll back with a lower rate."""
        self.skipped_steps, self.bad_streak = self.skipped_steps + 1, self.bad_streak + 1
        if self.pos >= self.steps_per_epoch:
            self.end_epoch()
        if self.bad_streak >= self.cfg.train.max_bad_steps:
            self.rollback()

    def rollback(self) -> None:
        t = self.cfg.train
        if self.rollbacks >= t.max_rollbacks:
            raise Diverged(
                f"training diverged: {self.bad_streak} non-finite steps in a row at step {self.step} after "
                f"{self.rollbacks} rollbacks; lower train.lr or set train.clip_grad"
            )
        counts = (self.rollbacks + 1, self.skipped_steps)
        checkpoint.restore(self, *checkpoint.latest(self.run_dir))
        self.rollbacks, self.skipped_steps = counts
        self.bad_streak = 0
        lr = t.lr * t.lr_backoff**self.rollbacks
        for group in self.opt.param_groups:
            group["lr"] = lr
        warnings.warn(f"non-finite steps: rolled back to step {self.step}, learning rate now {lr:g}", stacklevel=2)

    def end_epoch(self) -> None:
        count = float(self.sums.pop("count", 1.0)) or 1.0
        terms = {f"train_{k}": float(v) / count for k, v in self.sums.items()}
        self.epoch, self.pos, self.perm, self.sums = self.epoch + 1, 0, None, {}
        if self.epoch % self.cfg.train.eval_every == 0 or self.epoch == self.cfg.train.epochs:
            self.evaluate_epoch(terms)
            self.checkpoint()

    def evaluate_epoch(self, train_terms: dict[str, float]) -> dict:
        self.model.eval()
        test = evaluate.elbo_terms(self.model, self.test_x)
        self.model.train()
        record = {"epoch": self.epoch, "step": self.step, "seconds": self.elapsed(), "skipped_steps": self.skipped_steps}
        record.update(train_terms)
        record.update({f"test_{k}": v for k, v in test.items()})
        self.metrics.append(record)
        payload = "".join(json.dumps(m, sort_keys=True) + "\n" for m in self.metrics)
        runs.atomic_write_bytes(self.run_dir / runs.METRICS, payload.encode())
        for hook in self.hooks:
            hook(record)
        return record

    def checkpoint(self) -> None:
        """Save the state, unless the last step was not finite: only good states are kept."""
        if self.bad_streak:
            return
        if checkpoint.save(self, self.cfg.train.keep_checkpoints) is None:
            self.bad_streak = self.cfg.train.max_bad_steps  # non-finite weights: never saved
            self.rollback()

    def fit(self, progress: bool = True) -> None:
        total = self.cfg.train.epochs * self.steps_per_epoch
        if not checkpoint.list_checkpoints(self.run_dir):
            self.checkpoint()  # step 0: a point to roll back to
        self.model.train()
        with tqdm(total=total, initial=self.step, disable=not progress, unit="step", dynamic_ncols=True, leave=False) as bar:
            while self.epoch < self.cfg.train.epochs:
                self.advance()
                self.update_bar(bar)
                if self.stop_signal is not None:
                    self.checkpoint()
                    raise Interrupted(self.run_dir, self.step, self.stop_signal)
        self.model.eval()

    def update_bar(self, bar) -> None:
        bar.n = self.step
        if self.pos % 20 == 1 and "loss" in self.sums:
            n = float(self.sums["count"])
            bar.set_description(f"epoch {self.epoch + 1}/{self.cfg.train.epochs}", refresh=False)
            bar.set_postfix(loss=f"{float(self.sums['loss']) / n:.2f}", kl=f"{float(self.sums.get('kl', 0.0)) / n:.2f}", refresh=False)
        bar.update(0)

    def finish(self, data: data_mod.Data) -> dict:
        """Final held-out metrics (with the IS log-likelihood), summary.json and pictures."""
        summary = evaluate.evaluate(self.model, self.test_x, self.cfg.train.eval_k)
        summary.update(
            epochs=self.epoch,
            steps=self.step,
            skipped_steps=self.skipped_steps,
            rollbacks=self.rollbacks,
            train_seconds=self.metrics[-1]["seconds"] if self.metrics else 0.0,
            parameters=sum(p.numel() for p in self.model.parameters()),
        )
        warning = objectives.schedule_warning(self.cfg.objective, self.step)
        if warning:  # a warm-up longer than training: warn, don't fail
            warnings.warn(warning, stacklevel=2)
            summary["warnings"] = [warning]
        runs.write_json(self.run_dir / runs.SUMMARY, summary)
        pictures.save_samples(self.model, self.run_dir / "samples.png", seed=self.cfg.seed)
        pictures.save_reconstructions(self.model, self.test_x, self.run_dir / "reconstructions.png")
        return summary


@contextmanager
def stop_on_signals(trainer: Trainer):
    """SIGINT/SIGTERM ask the trainer to finish its step, checkpoint and stop."""
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


def _setup(cfg: Config) -> tuple[data_mod.Data, VAE]:
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    data = data_mod.load(cfg.data)
    model = build(cfg, data.x_shape).to(device)
    model.head.check_data(data.train, "the training set")
    model.head.check_data(data.test, "the test set")
    return data, model


def _run(trainer: Trainer, data: data_mod.Data, progress: bool) -> Path:
    with stop_on_signals(trainer):
        trainer.fit(progress)
    trainer.finish(data)
    if trainer.cfg.train.report:
        from .report import write_report

        write_report(trainer.run_dir, seed=trainer.cfg.seed)
    return trainer.run_dir


def train(cfg: Config, out: str | Path, overwrite: bool = False, hooks: Iterable[Hook] = (), progress: bool | None = None) -> Path:
    """Train the configured VAE; returns the run folder (config, metrics, checkpoints, summary, pictures)."""
    data, model = _setup(cfg)
    run_dir = runs.prepare_run_dir(out, overwrite)
    runs.write_json(run_dir / runs.CONFIG, cfg.to_dict())
    trainer = Trainer(cfg, model, data, run_dir, hooks)
    return _run(trainer, data, cfg.train.progress if progress is None else progress)


def resume(run_dir: str | Path, epochs: int | None = None, hooks: Iterable[Hook] = (), progress: bool | None = None) -> Path:
    """Continue a run from its newest checkpoint; with ``epochs``, train up to that many epochs."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReparamError(f"run folder {run_dir} does not exist")
    cfg = config.from_dict(runs.read_json(run_dir / runs.CONFIG))
    state = checkpoint.latest(run_dir)
    if epochs is not None:
        if epochs < state[1]["epoch"]:
            raise ConfigError(f"train.epochs={epochs} is fewer than the {state[1]['epoch']} epochs already done")
        cfg.train.epochs = epochs
        runs.write_json(run_dir / runs.CONFIG, cfg.to_dict())
    data, model = _setup(cfg)
    trainer = Trainer(cfg, model, data, run_dir, hooks)
    checkpoint.restore(trainer, *state)
    trainer.metrics = [m for m in runs.read_jsonl(run_dir / runs.METRICS) if m["step"] <= trainer.step]
    return _run(trainer, data, cfg.train.progress if progress is None else progress)
