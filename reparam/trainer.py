"""The training loop: in-memory data batched by index, Adam, held-out evaluation, checkpoints.

The loop knows nothing about families, likelihoods or bounds: it calls the configured
objective, minimizes ``-bound.mean()``, and calls ``model.on_step`` for schedules. Its
whole state (weights, optimizer, RNGs, the epoch's data order and position) goes into
every checkpoint, so ``resume`` continues a killed run bit for bit (see checkpoint.py).
The learning rate is a pure function of the global step (schedules.py): recomputed, never
restored, so a resume with more epochs stretches the schedule over the new total.
Under torchrun the same loop runs on every rank (see distributed.py); with one process
none of the distributed branches is taken.
"""

from __future__ import annotations

import json
import math
import signal
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from tqdm.auto import tqdm

from . import checkpoint, diagnostics, distributed, evaluate, objectives, pictures, runs, schedules
from . import data as data_mod
from .config import Config
from .devices import Amp
from .distributed import SINGLE, Dist
from .errors import ReparamError
from .model import VAE

Hook = Callable[[dict], None]


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the run was checkpointed and can be resumed."""

    def __init__(self, run_dir: Path, step: int, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; resume with: reparam train --resume {run_dir}")
        self.exit_code = 128 + signum


class Diverged(ReparamError):
    """Non-finite steps kept coming after every allowed rollback."""


def make_optimizer(model: VAE, lr: float) -> torch.optim.Optimizer:
    """Adam, with the fused kernel where this torch build has it (fewer passes over the weights)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - older torch or device without it
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


class Trainer:
    """Runs ``cfg.train.epochs`` epochs and writes the run folder as it goes (rank 0 only)."""

    def __init__(self, cfg: Config, model: VAE, data: data_mod.Data, run_dir: Path, hooks: Iterable[Hook] = (), dist: Dist = SINGLE):
        self.cfg, self.model, self.run_dir, self.hooks, self.dist = cfg, model, run_dir, list(hooks), dist
        self.device = next(model.parameters()).device
        self.train_x = data.train.to(self.device)
        self.test_x = data.test.to(self.device)
        self.objective = objectives.lookup(cfg.objective.name)
        self.ddp = distributed.wrap(model, self.objective, dist, self.device) if dist.enabled else None
        self.opt = make_optimizer(model, cfg.train.lr)
        self.amp = Amp(cfg.train.precision, self.device.type)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)  # the same on every rank
        self.dynamic = cfg.data.binarize == "dynamic"
        self.step = self.epoch = self.pos = self.rollbacks = self.skipped_steps = self.bad_streak = 0
        self.perm: torch.Tensor | None = None  # this epoch's data order
        self.global_batch = cfg.train.batch_size  # size of the current global batch
        self.sums: dict[str, torch.Tensor] = {}  # running sums of this epoch's terms
        self.metrics: list[dict] = []
        self.stop_signal: int | None = None
        self.restore_clock(0.0)
        self.apply_lr()

    def elapsed(self) -> float:
        return round(self._offset + time.perf_counter() - self._clock, 3)

    def restore_clock(self, seconds: float) -> None:
        self._offset, self._clock = seconds, time.perf_counter()

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_x) / self.cfg.train.batch_size)

    @property
    def total_steps(self) -> int:
        return self.cfg.train.epochs * self.steps_per_epoch

    def apply_lr(self) -> float:
        """Set the rate for the step at ``self.step``: the schedule's, times lr_backoff**rollbacks.

        Called whenever the step or the rollback count changes, so the optimizer (and every
        checkpoint) always holds the rate of the next step. A float per group, only if changed.
        """
        lr = schedules.lr_at(self.cfg.train, self.step, self.total_steps, self.rollbacks)
        for group in self.opt.param_groups:
            if group["lr"] != lr:
                group["lr"] = lr
        return lr

    def next_batch(self) -> torch.Tensor:
        """The batch at ``pos`` of this epoch's permutation, binarized afresh if dynamic.

        Distributed: every rank draws the whole global batch (same permutation, same
        binarization noise) and keeps its own slice.
        """
        if self.perm is None:
            self.perm = torch.randperm(len(self.train_x), generator=self.gen, device=self.device)
        bs = self.cfg.train.batch_size
        x = torch.index_select(self.train_x, 0, self.perm[self.pos * bs : (self.pos + 1) * bs])  # ~10x faster than x[idx]
        x = data_mod.binarize(x, self.gen) if self.dynamic else x
        if self.dist.enabled:
            self.global_batch = len(x)
            x = x[self.dist.shard(len(x))]
        return x

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-bound.mean() over x (B, *x_shape) and the per-example terms (under autocast if set).

        Distributed: -bound.sum() * world / global batch, so DDP's gradient average is the
        gradient of the global batch mean.
        """
        kwargs = objectives.call_kwargs(self.cfg.objective, self.step, self.batch_mean if self.ddp is not None else None)
        with self.amp.autocast():
            if self.ddp is None:
                bound, terms = self.objective(self.model, x, **kwargs)
                return -bound.mean(), terms  # the one reduction over the batch
            bound, terms = self.ddp(x, **kwargs)
            return -bound.sum() * (self.dist.world / self.global_batch), terms

    def batch_mean(self, t: torch.Tensor) -> torch.Tensor:
        """Mean over the global batch of this rank's rows t (B, ...) (free bits choose their mask with it)."""
        return distributed.global_mean(t, self.global_batch)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """One optimizer step on x (B, *x_shape): batch-mean terms, or None if not finite."""
        loss, terms = self.loss(x)
        self.opt.zero_grad(set_to_none=True)
        self.amp.backward(loss)
        self.amp.unscale(self.opt)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm = get_total_norm(grads)
        check = loss.detach() if self.ddp is None else distributed.sum_(loss) / self.dist.world
        if not bool(torch.isfinite(check + norm)) and not self.amp.overflow_only(check):  # one sync per step
            return None
        if self.cfg.train.clip_grad:
            clip_grads_with_norm_(self.model.parameters(), self.cfg.train.clip_grad, norm)
        self.amp.step(self.opt)
        return {"loss": loss.detach(), **{k: v.detach().mean() for k, v in terms.items()}}

    def advance(self) -> None:
        """Process one batch: step (or skip a non-finite one), then epoch-end and checkpoint duties."""
        out = self.train_step(self.next_batch())
        self.pos, self.step = self.pos + 1, self.step + 1
        self.model.on_step(self.step)
        self.apply_lr()
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
        lr = self.apply_lr()
        warnings.warn(f"non-finite steps: rolled back to step {self.step}, learning rate now {lr:g}", stacklevel=2)

    def reduced_sums(self) -> dict[str, torch.Tensor]:
        """This epoch's running sums; distributed, averaged over ranks (each logged its own shard)."""
        if not (self.dist.enabled and self.sums):
            return dict(self.sums)
        keys = sorted(self.sums)
        total = distributed.sum_(torch.stack([torch.as_tensor(self.sums[k], device=self.device) for k in keys]))
        return dict(zip(keys, total / self.dist.world))

    def end_epoch(self) -> None:
        sums = self.reduced_sums()
        count = float(sums.pop("count", 1.0)) or 1.0
        terms = {f"train_{k}": float(v) / count for k, v in sums.items()}
        self.epoch, self.pos, self.perm, self.sums = self.epoch + 1, 0, None, {}
        if self.epoch % self.cfg.train.eval_every == 0 or self.epoch == self.cfg.train.epochs:
            self.evaluate_epoch(terms)
            self.checkpoint()

    def test_terms(self) -> dict[str, float]:
        """Mean test ELBO terms; distributed, each rank scores its shard and the sums are reduced."""
        if not self.dist.enabled:
            return evaluate.elbo_terms(self.model, self.test_x)
        part = self.test_x[self.dist.shard(len(self.test_x))]  # never empty (distributed.check_sizes)
        means = evaluate.elbo_terms(self.model, part)
        keys = sorted(means)
        local = torch.tensor([means[k] * len(part) for k in keys], dtype=torch.float64, device=self.device)
        return {k: float(v) / len(self.test_x) for k, v in zip(keys, distributed.sum_(local))}

    def evaluate_epoch(self, train_terms: dict[str, float]) -> dict:
        self.model.eval()
        test = self.test_terms()
        if self.dist.is_main:  # on rank 0's images: the posterior-collapse dashboard over training
            test.update(diagnostics.epoch_dashboard(self.model, self.test_x))
        self.model.train()
        record = {"epoch": self.epoch, "step": self.step, "seconds": self.elapsed(), "skipped_steps": self.skipped_steps}
        record["lr"] = self.opt.param_groups[0]["lr"]  # the rate of the next step (lr_final at the end)
        record.update(train_terms)
        record.update({f"test_{k}": v for k, v in test.items()})
        self.metrics.append(record)
        if not self.dist.is_main:
            return record
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
        total = self.total_steps
        if not checkpoint.list_checkpoints(self.run_dir):
            self.checkpoint()  # step 0: a point to roll back to
        self.model.train()
        show = progress and self.dist.is_main
        with tqdm(total=total, initial=self.step, disable=not show, unit="step", dynamic_ncols=True, leave=False) as bar:
            while self.epoch < self.cfg.train.epochs:
                self.advance()
                self.update_bar(bar)
                if distributed.any_rank(self.dist, self.stop_signal is not None, self.device):
                    self.checkpoint()
                    raise Interrupted(self.run_dir, self.step, self.stop_signal or signal.SIGTERM)
        self.model.eval()

    def update_bar(self, bar) -> None:
        bar.n = self.step
        if self.pos % 20 == 1 and "loss" in self.sums and not bar.disable:
            n = float(self.sums["count"])
            bar.set_description(f"epoch {self.epoch + 1}/{self.cfg.train.epochs}", refresh=False)
            bar.set_postfix(loss=f"{float(self.sums['loss']) / n:.2f}", kl=f"{float(self.sums.get('kl', 0.0)) / n:.2f}", refresh=False)
        bar.update(0)

    def finish(self, data: data_mod.Data) -> dict | None:
        """Final held-out metrics (with the IS log-likelihood), summary.json and pictures (rank 0)."""
        if not self.dist.is_main:
            return None
        summary = evaluate.evaluate(self.model, self.test_x, self.cfg.train.eval_k)
        summary.update(
            epochs=self.epoch,
            steps=self.step,
            skipped_steps=self.skipped_steps,
            rollbacks=self.rollbacks,
            train_seconds=self.metrics[-1]["seconds"] if self.metrics else 0.0,
            parameters=sum(p.numel() for p in self.model.parameters()),
            processes=self.dist.world,
            global_batch=self.cfg.train.batch_size,
        )
        warning = objectives.schedule_warning(self.cfg.objective, self.step)
        if warning:  # a warm-up longer than training: warn, don't fail
            warnings.warn(warning, stacklevel=2)
            summary["warnings"] = [warning]
        runs.write_json(self.run_dir / runs.SUMMARY, summary)
        pictures.save_samples(self.model, self.run_dir / "samples.png", seed=self.cfg.seed)
        pictures.save_reconstructions(self.model, self.test_x, self.run_dir / "reconstructions.png")
        return summary
