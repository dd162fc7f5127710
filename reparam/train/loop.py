"""The training loop: in-memory data batched by index, Adam, held-out evaluation, checkpoints.

The loop knows nothing about families, likelihoods or bounds: it calls its
``objectives.Objective`` module, minimizes ``-bound.mean()``, and calls ``model.on_step``
for schedules. Its whole state (weights, the objective's state, optimizer, RNGs, the
epoch's data order and position) is ``state_dict()``, written into every checkpoint, so a
killed run continues bit for bit (``load_state_dict``). The learning rate is a pure
function of the global step (``optim.lr_at``): recomputed, never restored, so a resume with
more epochs stretches the schedule over the new total. Under a wall-clock budget
(``train.budget``) training ends when the training clock, which the state carries, reaches
it, and the schedule runs over the budget instead. Under torchrun the same loop runs on
every rank (see ``distributed.py``); with one process none of the distributed branches is
taken.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from tqdm.auto import tqdm

from .. import data as data_mod
from .. import distributed, evaluate, objectives, optim, runs
from ..devices import Amp, Threads
from ..distributed import SINGLE, Dist
from ..errors import ReparamError, RunError
from ..evaluate import diagnostics
from ..model import VAE, ConditionalVAE, HierarchicalVAE
from ..objectives.labels import Labelled, SemiSupervised
from ..report import pictures
from . import checkpoint

Hook = Callable[[dict], None]
#: The training clock (tests put a fake one here).
clock = time.perf_counter
#: Checkpoints written by reparam 0.1 kept a score-function baseline inside the model's weights.
LEGACY_BASELINE = "baseline."


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the run was checkpointed and can be resumed."""

    def __init__(self, run_dir: Path, step: int, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; resume with: reparam train --resume {run_dir}")
        self.exit_code = 128 + signum


class Diverged(ReparamError):
    """Non-finite steps kept coming after every allowed rollback."""


def finite(module: torch.nn.Module) -> bool:
    """Whether every floating-point tensor of the module's state is finite."""
    return all(bool(torch.isfinite(p).all()) for p in module.state_dict().values() if p.is_floating_point())


class Trainer:
    """Runs ``cfg.train.epochs`` epochs (or until ``cfg.train.budget``) and writes the run folder as it goes (rank 0 only)."""

    def __init__(self, cfg, model: VAE | HierarchicalVAE, data: data_mod.Data, run_dir: Path, hooks: Iterable[Hook] = (), dist: Dist = SINGLE):
        self.cfg, self.model, self.run_dir, self.hooks, self.dist = cfg, model, Path(run_dir), list(hooks), dist
        self.device = next(model.parameters()).device
        self.train_x = data.train.to(self.device)
        self.test_x = data.test.to(self.device)
        self.columns, self.nll_shift = data.columns, data.nll_shift  # a table's columns; None for images
        self.warnings: list[str] = []  # for summary.json, each also raised as a UserWarning
        asked = cfg.train.batch_size != type(cfg.train).batch_size  # set by the user (the default is cut to a small set quietly)
        if asked and cfg.train.batch_size > len(self.train_x):
            self.warn(f"train.batch_size={cfg.train.batch_size} is larger than the {len(self.train_x):,} training examples: every step "
                      f"uses all of them; set train.batch_size to at most {len(self.train_x)} to silence this")  # fmt: skip
        self.setup_labels(data)
        self.held_out = replace(data, train=torch.empty(0, *data.x_shape), train_labels=None, test=self.test_x)  # for the report: no training images kept
        self.budget = cfg.train.budget_seconds  # 0: none
        self.threads = Threads(cfg.train.threads, tunable=self.device.type == "cpu" and not dist.enabled, clock=lambda: clock())
        self.progress = True
        self.objective = objectives.Objective(cfg.objective, model.x_shape).to(self.device)
        self.ddp = distributed.wrap(model, self.objective, dist, self.device) if dist.enabled else None
        self.opt = optim.make_optimizer([*model.parameters(), *self.objective.parameters()], cfg.train.lr)
        self.average = optim.WeightAverage(model.parameters(), cfg.train.ema) if cfg.train.ema else None  # train.ema
        self.amp = Amp(cfg.train.precision, self.device.type)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)  # the same on every rank
        self.dynamic = cfg.data.binarize == "dynamic"
        self.step = self.epoch = self.pos = self.rollbacks = self.skipped_steps = self.bad_streak = 0
        self.perm: torch.Tensor | None = None  # this epoch's data order
        self.lperm: torch.Tensor | None = None  # M2: the labelled images' current order
        self.lpos = 0  # M2: labelled images used from it
        self.global_batch = cfg.train.batch_size  # size of the current global batch
        self.sums: dict[str, torch.Tensor] = {}  # running sums of this epoch's terms
        self.metrics: list[dict] = []
        self.stop_signal: int | None = None
        self.saved_step = -1  # the step of the newest checkpoint this trainer wrote (not part of the state)
        self.last_terms: dict[str, float] = {}  # the last closed epoch's training terms
        self.restore_clock(0.0)
        self.apply_lr()

    def warn(self, message: str) -> None:
        """Say something the user should know about the run without stopping it: a UserWarning now, and in summary.json."""
        warnings.warn(message, stacklevel=3)
        self.warnings.append(message)

    def setup_labels(self, data: data_mod.Data) -> None:
        """A conditional run's labels: all of the training set's (a conditional VAE), or for M2
        (``data.labeled``) a class-balanced labelled subset, the rest the unlabelled pool."""
        self.train_y = self.test_y = self.labelled = None
        self.shares = (1.0, 0.0)
        if self.cfg.model.condition != "label":
            return
        assert data.train_labels is not None and data.test_labels is not None and data.classes is not None  # data_mod.check_labels
        y = data.train_labels.to(self.device)
        self.test_y = data.test_labels.to(self.device)
        if not self.cfg.data.labeled:
            self.train_y = y
            return
        idx = data_mod.labelled_subset(data.train_labels, self.cfg.data.labeled, len(data.classes), self.cfg.seed).to(self.device)
        keep = torch.ones(len(y), dtype=torch.bool, device=self.device)
        keep[idx] = False
        n = len(y)
        self.labelled = (self.train_x[idx], y[idx])
        self.train_x = self.train_x[keep]  # the unlabelled pool: an epoch is one pass over it
        self.shares = (len(self.train_x) / n, len(idx) / n)

    def eval_model(self):
        """What held-out numbers describe: the model given the test labels (a conditional VAE),
        the model itself (M2, whose labels are latent; a plain VAE)."""
        if self.test_y is None or self.labelled is not None:
            return self.model
        return self.model.given(self.test_y)

    def averaged(self) -> contextlib.AbstractContextManager:
        """The weights that held-out numbers and model.safetensors describe: the moving average
        (``train.ema``) for the duration, or the trained weights themselves."""
        return self.average.swapped() if self.average is not None else contextlib.nullcontext()

    # --- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The complete training state: groups of tensors and JSON-safe ``meta``.

        ``model`` and ``objective`` (state_dicts), ``optim`` (``optim.optimizer_state``),
        ``rng`` (the CPU and CUDA generators, the data generator, every rank's stream under
        torchrun: a collective, so every rank calls it), ``sums`` (this epoch's running
        terms), ``perm`` (the epoch's data order), and ``meta``: counters, the clock, the
        optimizer's param groups, the image shape, the process count, the loss scaler.
        """
        optim_tensors, groups = optim.optimizer_state(self.opt)
        rng = {"torch": torch.get_rng_state(), "data": self.gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.dist.enabled:
            rng.update({f"rank{r}": s for r, s in enumerate(distributed.gather_rng(self.dist, self.device))})
        meta = {k: getattr(self, k) for k in ("step", "epoch", "pos", "lpos", "rollbacks", "skipped_steps")}
        meta.update(seconds=self.elapsed(), param_groups=groups, x_shape=list(self.model.x_shape), world=self.dist.world, scaler=self.amp.state())
        state: dict[str, Any] = {"model": self.model.state_dict(), "objective": self.objective.state_dict(), "optim": optim_tensors,
                 "rng": rng, "sums": self.reduced_sums(), "meta": meta}  # fmt: skip
        if self.perm is not None:
            state["perm"] = self.perm
        if self.lperm is not None:
            state["lperm"] = self.lperm
        if self.average is not None:
            state["average"], meta["average_updates"] = self.average.state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put a ``state_dict`` back (a checkpoint of this layout, or one written by reparam 0.1)."""
        weights, objective = dict(state.get("model", {})), dict(state.get("objective", {}))
        for name in [n for n in weights if n.startswith(LEGACY_BASELINE)]:  # reparam 0.1: the baseline sat in the model
            objective[name] = weights.pop(name)
        rng, meta = state.get("rng", {}), state["meta"]
        if not {"torch", "data"} <= set(rng):
            raise RunError(f"the checkpoint lacks rng.{'torch' if 'torch' not in rng else 'data'}; refusing to resume from it")
        runs.check_state_dict(self.model, weights, Path("checkpoint"))
        self.model.load_state_dict(weights)
        self.objective.load_state_dict(objective)
        optim.load_optimizer_state(self.opt, state.get("optim", {}), meta["param_groups"])
        self.amp.load_state(meta.get("scaler") or {})
        self._restore_rng(rng, meta)
        self.sums = dict(state.get("sums", {}))
        self.perm = state["perm"].to(self.device) if "perm" in state else None
        self.lperm = state["lperm"].to(self.device) if "lperm" in state else None
        for key in ("step", "epoch", "pos", "rollbacks", "skipped_steps"):
            setattr(self, key, meta[key])
        self.lpos = meta.get("lpos", 0)
        if self.average is not None:
            if "average" not in state:
                raise RunError("the checkpoint holds no weight average, though the run's config sets train.ema; resume a run that trained with it")
            self.average.load_state(state["average"], meta["average_updates"])
        self.restore_clock(meta["seconds"])
        self.model.on_step(self.step)  # schedules are functions of the step
        self.apply_lr()

    def _restore_rng(self, rng: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """This rank's sampling stream: its saved state, or (another process count) a fresh one."""
        own = rng.get(f"rank{self.dist.rank}") if meta.get("world", 1) == self.dist.world else None
        if self.dist.enabled and own is None:
            torch.manual_seed(distributed.rank_seed(self.cfg.seed + meta["step"], self.dist.rank))
        else:
            torch.set_rng_state(rng["torch"] if own is None else own)
        if self.device.type == "cuda" and "cuda" in rng and not self.dist.enabled:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.gen.set_state(rng["data"])

    def elapsed(self) -> float:
        """Training seconds so far, across resumes (this rank's clock)."""
        return round(self._offset + clock() - self._clock, 3)

    def restore_clock(self, seconds: float) -> None:
        """Set the training clock to ``seconds``; ``self.seconds`` is the reading every rank agreed on."""
        self._offset, self._clock, self.seconds = seconds, clock(), seconds

    # --- one step ------------------------------------------------------------------------

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_x) / self.cfg.train.batch_size)

    @property
    def total_steps(self) -> int:
        return self.cfg.train.epochs * self.steps_per_epoch

    def apply_lr(self) -> float:
        """Set the rate for the step at ``self.step``: the schedule's, times lr_backoff**rollbacks.

        Called whenever the step or the rollback count changes, so the optimizer (and every
        checkpoint) always holds the rate of the next step. Under a budget the clock read
        before the step (``self.seconds``) also moves it. A float per group, only if changed.
        """
        lr = optim.lr_at(self.cfg.train, self.step, self.total_steps, self.rollbacks, self.seconds, self.budget)
        for group in self.opt.param_groups:
            if group["lr"] != lr:
                group["lr"] = lr
        return lr

    def next_batch(self) -> torch.Tensor | Labelled | SemiSupervised:
        """The batch at ``pos`` of this epoch's permutation, binarized afresh if dynamic; with
        its labels for a conditional VAE, beside a labelled batch for M2.

        Distributed: every rank draws the whole global batch (same permutation, same
        binarization noise) and keeps its own slice.
        """
        if self.perm is None:
            self.perm = torch.randperm(len(self.train_x), generator=self.gen, device=self.device)
        bs = self.cfg.train.batch_size
        idx = self.perm[self.pos * bs : (self.pos + 1) * bs]
        x = torch.index_select(self.train_x, 0, idx)  # ~10x faster than x[idx]
        x = data_mod.draw_binary(x, self.gen) if self.dynamic else x
        y = None if self.train_y is None else self.train_y[idx]
        if self.dist.enabled:
            self.global_batch = len(x)
            rows = self.dist.shard(len(x))
            x, y = x[rows], None if y is None else y[rows]
        if y is not None:
            return Labelled(x, y)
        if self.labelled is not None:
            return SemiSupervised(x, *self.next_labelled(), *self.shares)
        return x

    def next_labelled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """M2's labelled batch (``train.labeled_batch_size``, default min(N_l, batch_size)): the
        next images of a permutation of the labelled subset, a fresh one when it runs out."""
        assert self.labelled is not None  # M2 only (setup_labels)
        x_l, y_l = self.labelled
        size = self.cfg.train.labeled_batch_size or min(len(x_l), self.cfg.train.batch_size)
        if self.lperm is None or self.lpos + size > len(x_l):
            self.lperm, self.lpos = torch.randperm(len(x_l), generator=self.gen, device=self.device), 0
        idx = self.lperm[self.lpos : self.lpos + size]
        self.lpos += size
        x = torch.index_select(x_l, 0, idx)
        return (data_mod.draw_binary(x, self.gen) if self.dynamic else x), y_l[idx]

    def batch_mean(self, t: torch.Tensor) -> torch.Tensor:
        """Mean over the global batch of this rank's rows t (B, ...) (free bits choose their mask with it)."""
        return distributed.global_mean(t, self.global_batch)

    def loss(self, x) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-bound.mean() over the batch's rows (``next_batch``) and the per-example terms (under autocast if set).

        Distributed: -bound.sum() * world / global batch, so DDP's gradient average is the
        gradient of the global batch mean.
        """
        with self.amp.autocast():
            progress = optim.progress(self.step, self.total_steps, self.seconds, self.budget)  # what a warm-up share reads
            if self.ddp is None:
                bound, terms = self.objective(self.model, x, self.step, progress=progress)
                return -bound.mean(), terms  # the one reduction over the batch
            bound, terms = self.ddp(x, self.step, self.batch_mean, progress)
            return -bound.sum() * (self.dist.world / self.global_batch), terms

    def train_step(self, x) -> dict[str, torch.Tensor] | None:
        """One optimizer step on a batch (``next_batch``): batch-mean terms, or None if not finite."""
        loss, terms = self.loss(x)
        self.opt.zero_grad(set_to_none=True)
        self.amp.backward(loss)
        self.amp.unscale(self.opt)
        grads = [p.grad for group in self.opt.param_groups for p in group["params"] if p.grad is not None]
        norm = get_total_norm(grads)
        check = loss.detach() if self.ddp is None else distributed.sum_(loss) / self.dist.world
        if not bool(torch.isfinite(check + norm)) and not self.amp.overflow_only(check):  # one sync per step
            return None
        if self.cfg.train.clip_grad:
            clip_grads_with_norm_([p for group in self.opt.param_groups for p in group["params"]], self.cfg.train.clip_grad, norm)
        self.amp.step(self.opt)
        if self.average is not None:
            self.average.update()
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
        every = self.cfg.train.checkpoint_every
        if every and self.step % every == 0 and self.saved_step != self.step:
            self.checkpoint()

    # --- bad steps -----------------------------------------------------------------------

    def on_bad_step(self) -> None:
        """Count a skipped step; after max_bad_steps in a row, roll back with a lower rate."""
        self.skipped_steps, self.bad_streak = self.skipped_steps + 1, self.bad_streak + 1
        if self.pos >= self.steps_per_epoch:
            self.end_epoch()
        if self.bad_streak >= self.cfg.train.max_bad_steps:
            self.rollback()

    def rollback(self) -> None:
        """Return to the newest checkpoint with the rate times lr_backoff; Diverged after max_rollbacks."""
        t = self.cfg.train
        if self.rollbacks >= t.max_rollbacks:
            raise Diverged(
                f"training diverged: {self.bad_streak} non-finite steps in a row at step {self.step} after "
                f"{self.rollbacks} rollbacks; lower train.lr or set train.clip_grad"
            )
        counts, seconds = (self.rollbacks + 1, self.skipped_steps), self.elapsed()
        self.load_state_dict(checkpoint.nest(*checkpoint.latest(self.run_dir)))
        self.rollbacks, self.skipped_steps = counts
        self.restore_clock(seconds)  # the time was spent: a budget keeps counting it
        self.bad_streak = 0
        lr = self.apply_lr()
        warnings.warn(f"non-finite steps: rolled back to step {self.step}, learning rate now {lr:g}", stacklevel=2)

    # --- epochs, evaluation, checkpoints -------------------------------------------------

    def reduced_sums(self) -> dict[str, torch.Tensor]:
        """This epoch's running sums; distributed, averaged over ranks (each logged its own shard)."""
        if not (self.dist.enabled and self.sums):
            return dict(self.sums)
        keys = sorted(self.sums)
        total = distributed.sum_(torch.stack([torch.as_tensor(self.sums[k], device=self.device) for k in keys]))
        return dict(zip(keys, total / self.dist.world))

    def end_epoch(self) -> None:
        """Close the epoch: its mean training terms, then (every eval_every epochs) evaluation and a checkpoint."""
        sums = self.reduced_sums()
        count = float(sums.pop("count", 1.0)) or 1.0
        terms = {f"train_{k}": float(v) / count for k, v in sums.items()}
        self.epoch, self.pos, self.perm, self.sums, self.last_terms = self.epoch + 1, 0, None, {}, terms
        last = self.epoch == self.cfg.train.epochs
        if self.epoch % self.cfg.train.eval_every == 0 or last:
            self.evaluate_epoch(terms)
            if last or not self.cfg.train.checkpoint_every:  # train.checkpoint_every: steps between checkpoints, and the last
                self.checkpoint()

    def test_terms(self) -> dict[str, float]:
        """Mean test ELBO terms; distributed, each rank scores its shard and the sums are reduced."""
        if not self.dist.enabled:
            return evaluate.elbo_terms(self.eval_model(), self.test_x)
        rows = self.dist.shard(len(self.test_x))
        part = self.test_x[rows]  # never empty (distributed.check_sizes)
        means = evaluate.elbo_terms(self.eval_model().rows(rows), part)
        keys = sorted(means)
        local = torch.tensor([means[k] * len(part) for k in keys], dtype=torch.float64, device=self.device)
        return {k: float(v) / len(self.test_x) for k, v in zip(keys, distributed.sum_(local))}

    def evaluate_epoch(self, train_terms: dict[str, float]) -> dict:
        """Held-out terms and the collapse dashboard, appended to metrics.jsonl; then the hooks (rank 0)."""
        self.model.eval()
        with self.averaged():
            test = self.test_terms()
            if self.dist.is_main:  # on rank 0's images: the posterior-collapse dashboard over training
                test.update(diagnostics.epoch_dashboard(self.model if self.test_y is None else cast(ConditionalVAE, self.model).given(self.test_y), self.test_x))
                if self.labelled is not None:
                    assert self.test_y is not None  # M2 has test labels (setup_labels)
                    test.update(evaluate.classification(self.model, self.test_x, self.test_y))
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
        """Save the state, unless the last step was not finite: only good states are kept.

        Rank 0 writes the checkpoint, model.safetensors and state.json; the others wait.
        """
        if self.bad_streak:
            return
        if not (finite(self.model) and finite(self.objective)):
            self.bad_streak = self.cfg.train.max_bad_steps  # non-finite weights: never saved
            return self.rollback()
        state = self.state_dict()  # a collective under torchrun: every rank builds it
        if self.dist.is_main:
            path = checkpoint.save(self.run_dir, self.step, state, self.cfg.train.keep_checkpoints)
            with self.averaged():
                runs.write_weights(self.run_dir, self.model, self.step, self.epoch, state["meta"]["x_shape"], path.name)
        self.saved_step = self.step
        distributed.barrier(self.dist)

    def fit(self, progress: bool = True) -> None:
        """Train from the current state up to ``cfg.train.epochs`` epochs or the budget, with a progress bar on rank 0.

        Raises Interrupted (after a checkpoint) when SIGINT or SIGTERM arrived on any rank.
        A budget that ends between evaluations is followed by one (``close``).
        """
        self.progress = progress
        if not checkpoint.list_checkpoints(self.run_dir):
            self.checkpoint()  # step 0: a point to roll back to
        self.model.train()
        show = progress and self.dist.is_main
        total, unit = (math.ceil(self.budget), "s") if self.budget else (self.total_steps, "step")
        with tqdm(total=total, disable=not show, unit=unit, dynamic_ncols=True, leave=False) as bar:
            while self.running():
                self.advance()
                self.update_bar(bar)
        self.close()
        if self.average is not None:  # the trained model is the average: the final evaluation, pictures and report see it
            self.average.apply()
        self.model.eval()

    def running(self) -> bool:
        """Whether to take another step. Reads the clock that every rank agrees on (one
        collective with the stop flag), stops after a signal, retunes ``train.threads=auto``
        when due, and ends at ``train.epochs`` or the budget."""
        stop, self.seconds = distributed.agree(self.dist, self.stop_signal is not None, self.elapsed(), self.device)
        if stop:
            self.checkpoint()
            raise Interrupted(self.run_dir, self.step, self.stop_signal or signal.SIGTERM)
        if self.budget:
            self.apply_lr()  # the rate at this clock reading (at the budget's end: lr_final)
        if self.threads.due():
            self.threads.tune(self.trial)
        return self.epoch < self.cfg.train.epochs and not self.out_of_time()

    def out_of_time(self) -> bool:
        return self.budget > 0 and self.seconds >= self.budget

    def close(self) -> None:
        """After the budget ran out: evaluate and checkpoint the state reached, unless the last step already was."""
        if not self.out_of_time() or (self.metrics and self.metrics[-1]["step"] == self.step):
            return
        sums = self.reduced_sums()
        count = float(sums.pop("count", 0.0))
        terms = {f"train_{k}": float(v) / count for k, v in sums.items()} if count else self.last_terms
        self.evaluate_epoch(terms)
        self.checkpoint()

    def trial(self) -> None:
        """What ``train.threads=auto`` times: the encoder on one training batch and the decoder on
        as many prior draws, forward and backward like a step (timed by ``devices.Threads.tune``
        for 50 ms at least; a forward pass of a few milliseconds chose two threads beside a busy
        neighbour, 3.6x the idle epoch), with the RNG state restored and the gradients dropped, so
        training never sees it (and no distribution is built from what the data hold)."""
        n = min(len(self.train_x), self.cfg.train.batch_size)
        x = self.train_x[:n]
        with torch.random.fork_rng(devices=[]), self.amp.autocast():
            if isinstance(self.model, ConditionalVAE):  # the networks also read a one-hot label
                y = torch.zeros(n, dtype=torch.long, device=self.device)
                out = self.model.raw_given(x, y), self.model.decode_mean_given(self.model.sample_prior_given(n, 1.0, y), y)
            else:
                out = self.model.encoder(x), self.model.decode_mean(self.model.sample_prior(n))
            torch.stack([o.float().square().mean() for o in out]).sum().backward()
        for p in self.model.parameters():
            p.grad = None

    def update_bar(self, bar) -> None:
        bar.n = min(int(self.seconds), bar.total) if self.budget else self.step
        if self.pos % 20 == 1 and "loss" in self.sums and not bar.disable:
            n = float(self.sums["count"])
            bar.set_description(f"epoch {self.epoch + 1}" + ("" if self.budget else f"/{self.cfg.train.epochs}"), refresh=False)
            bar.set_postfix(loss=f"{float(self.sums['loss']) / n:.2f}", kl=f"{float(self.sums.get('kl', 0.0)) / n:.2f}", refresh=False)
        bar.update(0)

    def finish(self) -> dict | None:
        """Final held-out metrics (with the IS log-likelihood), summary.json and pictures (rank 0).

        ``train.eval_k=auto`` gives the whole evaluation ``evaluate.budget.SHARE`` of the
        training time (see ``evaluate.budget``); an explicit K runs on every test image.
        """
        if not self.dist.is_main:
            return None
        seconds = self.metrics[-1]["seconds"] if self.metrics else self.elapsed()
        summary = evaluate.evaluate(self.model, self.test_x, self.cfg.train.eval_k, nll_shift=self.nll_shift, y=self.test_y,
                                    budget_seconds=evaluate.budget.SHARE * seconds, progress=self.progress)  # fmt: skip
        summary.update(
            epochs=self.epoch,
            steps=self.step,
            passes=round(self.epoch + min(self.pos * self.cfg.train.batch_size, len(self.train_x)) / len(self.train_x), 3),
            stopped_by="budget" if self.out_of_time() else "epochs",
            budget_seconds=self.budget,
            skipped_steps=self.skipped_steps,
            rollbacks=self.rollbacks,
            train_seconds=seconds,
            parameters=sum(p.numel() for p in self.model.parameters()),
            processes=self.dist.world,
            global_batch=min(self.cfg.train.batch_size, len(self.train_x)),
        )
        warning = objectives.schedule_warning(self.cfg.objective, self.step)
        if warning:  # a warm-up longer than training: warn, don't fail
            self.warn(warning)
        if self.warnings:
            summary["warnings"] = self.warnings
        runs.write_json(self.run_dir / runs.SUMMARY, summary)
        pictures.save_run_pictures(self.model, self.run_dir, self.test_x, self.cfg.seed, self.columns, self.test_y)
        return summary
