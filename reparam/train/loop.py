"""The training loop: the step, its advance, rollback, and when to evaluate and checkpoint.

The loop knows nothing about families, likelihoods or bounds: it calls its
``objectives.Objective`` module, minimizes ``-bound.mean()``, and calls ``model.on_step``
for schedules. What else training keeps is a part (``parts.py``, listed in ``PARTS``), each
owning its state. ``state_dict()`` is the whole training state, written into every
checkpoint, so a killed run continues bit for bit; the learning rate is a pure function of
the step (``optim.lr_at``), recomputed, never restored. Under torchrun the same loop runs on
every rank (``distributed.py``). The end of a run (the final evaluation, summary.json,
pictures) is ``finish.py``'s.
"""

from __future__ import annotations

import contextlib
import signal
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils import clip_grads_with_norm_, get_total_norm

from .. import checkpoint, distributed, objectives, optim, runs
from .. import data as data_mod
from ..distributed import SINGLE, Dist
from ..errors import Diverged, Interrupted
from .average import Average
from .batches import Batches
from .held_out import HeldOut
from .parts import Bar, Clock, Noise, Part, Precision, Tally, merge
from .selection import Selection
from .threads import ThreadTrial

Hook = Callable[[dict], None]
#: The parts, in the order they are built and restored: (attribute, class). A new piece of training state is one line here.
PARTS: tuple[tuple[str, type[Part]], ...] = (
    ("noise", Noise), ("batches", Batches), ("clock", Clock), ("tally", Tally), ("precision", Precision),
    ("average", Average), ("threads", ThreadTrial), ("held_out", HeldOut), ("selection", Selection),
)  # fmt: skip


class Trainer:
    """Runs ``cfg.train.epochs`` epochs (or until ``cfg.train.budget``) and writes the run folder as it goes (rank 0 only)."""

    batches: Batches
    clock: Clock
    tally: Tally
    precision: Precision
    held_out: HeldOut
    selection: Selection | None  # train.keep_best

    def __init__(self, cfg, model, data: data_mod.Data, run_dir: Path, hooks: Iterable[Hook] = (), dist: Dist = SINGLE):
        self.cfg, self.model, self.run_dir, self.hooks, self.dist = cfg, model, Path(run_dir), list(hooks), dist
        self.device = next(model.parameters()).device
        self.warnings: list[str] = []  # for summary.json, each also raised as a UserWarning
        self.objective = objectives.Objective(cfg.objective, model.x_shape).to(self.device)
        self.ddp = distributed.wrap(model, self.objective, dist, self.device) if dist.enabled else None
        self.params = [*model.parameters(), *self.objective.parameters()]  # what the optimizer steps and clipping reads
        self.opt = optim.make_optimizer(self.params, cfg.train.lr)
        self.step = self.rollbacks = self.skipped_steps = self.bad_streak = 0
        self.stop_signal: int | None = None
        self.saved_step = -1  # the step of the newest checkpoint this trainer wrote (not part of the state)
        self.parts: list[Part] = []
        for name, kind in PARTS:
            part = kind.make(self, data)
            setattr(self, name, part)
            self.parts += [] if part is None else [part]
        self.apply_lr()

    def warn(self, message: str) -> None:
        """Say something the user should know about the run without stopping it: a UserWarning now, and in summary.json."""
        warnings.warn(message, stacklevel=3)
        self.warnings.append(message)

    def evaluating(self) -> contextlib.ExitStack:
        """The weights that held-out numbers and model.safetensors describe (the parts', e.g. the moving average)."""
        stack = contextlib.ExitStack()
        for part in self.parts:
            stack.enter_context(part.evaluating())
        return stack

    def state_dict(self) -> dict[str, Any]:
        """The complete training state: ``model``, ``objective``, ``optim`` (state_dicts), the
        counters and the optimizer's param groups in ``meta`` (JSON-safe), and every part's
        entries (``parts.merge``). Under torchrun a collective: every rank calls it."""
        optim_tensors, groups = optim.optimizer_state(self.opt)
        meta = {"step": self.step, "rollbacks": self.rollbacks, "skipped_steps": self.skipped_steps, "param_groups": groups, "x_shape": list(self.model.x_shape)}  # fmt: skip
        state: dict[str, Any] = {"model": self.model.state_dict(), "objective": self.objective.state_dict(), "optim": optim_tensors, "meta": meta}
        for part in self.parts:
            merge(state, part.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put a ``state_dict`` back (``checkpoint.latest_state`` brings earlier layouts to this one)."""
        meta = state["meta"]
        runs.check_state_dict(self.model, state.get("model", {}), Path("checkpoint"))
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state.get("objective", {}))
        optim.load_optimizer_state(self.opt, state.get("optim", {}), meta["param_groups"])
        self.step, self.rollbacks, self.skipped_steps = meta["step"], meta["rollbacks"], meta["skipped_steps"]
        for part in self.parts:
            part.load_state_dict(state)
        self.model.on_step(self.step)  # schedules are functions of the step
        self.apply_lr()

    @property
    def total_steps(self) -> int:
        return self.cfg.train.epochs * self.batches.steps_per_epoch

    def apply_lr(self) -> float:
        """Set the rate for the step at ``self.step``: the schedule's, times lr_backoff**rollbacks;
        under a budget the agreed clock also moves it. A float per group, only if changed."""
        lr = optim.lr_at(self.cfg.train, self.step, self.total_steps, self.rollbacks, self.clock.seconds, self.clock.budget)
        for group in self.opt.param_groups:
            if group["lr"] != lr:
                group["lr"] = lr
        return lr

    def loss(self, x) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-bound.mean() over the batch's rows and the per-example terms (under autocast if set).

        Distributed: -bound.sum() * world / global batch, so DDP's gradient average is the
        gradient of the global batch mean (free bits choose their mask with that mean).
        """
        with self.precision.autocast():
            progress = optim.progress(self.step, self.total_steps, self.clock.seconds, self.clock.budget)  # what a warm-up share reads
            if self.ddp is None:
                bound, terms = self.objective(self.model, x, self.step, progress=progress)
                return -bound.mean(), terms  # the one reduction over the batch
            global_batch = self.batches.global_batch
            bound, terms = self.ddp(x, self.step, lambda t: distributed.global_mean(t, global_batch), progress)
            return -bound.sum() * (self.dist.world / global_batch), terms

    def train_step(self, x) -> dict[str, torch.Tensor] | None:
        """One optimizer step on a batch: batch-mean terms (the parts see them), or None if not finite."""
        loss, terms = self.loss(x)
        self.opt.zero_grad(set_to_none=True)
        amp = self.precision
        amp.backward(loss)
        amp.unscale(self.opt)
        norm = get_total_norm([p.grad for p in self.params if p.grad is not None])
        check = loss.detach() if self.ddp is None else distributed.sum_(loss) / self.dist.world
        if not bool(torch.isfinite(check + norm)) and not amp.overflow_only(check):  # one sync per step
            return None
        if self.cfg.train.clip_grad:
            clip_grads_with_norm_(self.params, self.cfg.train.clip_grad, norm)
        amp.step(self.opt)
        out = {"loss": loss.detach(), **{k: v.detach().mean() for k, v in terms.items()}}
        for part in self.parts:
            part.after_step(out)
        return out

    def advance(self) -> None:
        """Process one batch: step (or skip a non-finite one), then epoch-end and checkpoint duties."""
        out = self.train_step(self.batches.next())
        self.step += 1
        self.model.on_step(self.step)
        self.apply_lr()
        if out is None:
            self.skipped_steps, self.bad_streak = self.skipped_steps + 1, self.bad_streak + 1
        else:
            self.bad_streak = 0
        if self.batches.epoch_done():
            self.end_epoch()
        if self.bad_streak >= self.cfg.train.max_bad_steps:
            return self.rollback()
        every = self.cfg.train.checkpoint_every
        if out is not None and every and self.step % every == 0 and self.saved_step != self.step:
            self.checkpoint()

    def rollback(self) -> None:
        """Return to the newest checkpoint with the rate times lr_backoff; Diverged after max_rollbacks."""
        if self.rollbacks >= self.cfg.train.max_rollbacks:
            raise Diverged(
                f"training diverged: {self.bad_streak} non-finite steps in a row at step {self.step} after "
                f"{self.rollbacks} rollbacks; lower train.lr or set train.clip_grad"
            )
        counts, seconds = (self.rollbacks + 1, self.skipped_steps), self.clock.elapsed()
        self.load_state_dict(checkpoint.latest_state(self.run_dir))
        self.rollbacks, self.skipped_steps = counts
        self.clock.restore(seconds)  # the time was spent: a budget keeps counting it
        self.bad_streak = 0
        lr = self.apply_lr()
        warnings.warn(f"non-finite steps: rolled back to step {self.step}, learning rate now {lr:g}", stacklevel=2)

    def end_epoch(self) -> None:
        """Close the epoch: its mean training terms, then (every eval_every epochs) evaluation and a checkpoint."""
        terms = self.tally.close()
        self.batches.next_epoch()
        epoch = self.batches.epoch
        last = epoch == self.cfg.train.epochs
        if epoch % self.cfg.train.eval_every == 0 or last:
            self.held_out.evaluate(terms)
            if last or self.stopping() or not self.cfg.train.checkpoint_every:  # train.checkpoint_every: steps between checkpoints, and the last
                self.checkpoint()

    def checkpoint(self) -> None:
        """Save the state, unless the last step was not finite: only good states are kept.
        Rank 0 writes the checkpoint, model.safetensors and state.json; the others wait."""
        if self.bad_streak:
            return
        if not checkpoint.finite(self.model, self.objective):
            self.bad_streak = self.cfg.train.max_bad_steps  # non-finite weights: never saved
            return self.rollback()
        state = self.state_dict()  # a collective under torchrun: every rank builds it
        if self.dist.is_main:
            path = checkpoint.save(self.run_dir, self.step, state, self.cfg.train.keep_checkpoints)
            with self.evaluating():
                runs.write_weights(self.run_dir, self.model, self.step, self.batches.epoch, state["meta"]["x_shape"], path.name)
        self.saved_step = self.step
        distributed.barrier(self.dist)

    def fit(self, progress: bool = True) -> None:
        """Train from the current state up to ``cfg.train.epochs`` epochs or the budget, with a progress bar on rank 0.

        Raises Interrupted (after a checkpoint) when SIGINT or SIGTERM arrived on any rank.
        A budget that ends between evaluations is followed by one (``close``).
        """
        if not checkpoint.list_checkpoints(self.run_dir):
            self.checkpoint()  # step 0: a point to roll back to
        self.model.train()
        with Bar(self, progress and self.dist.is_main) as bar:
            while self.running():
                self.advance()
                bar.update()
        self.close()
        for part in self.parts:
            part.at_end()  # e.g. the weight average becomes the model: the final evaluation, pictures and report see it
        self.model.eval()

    def running(self) -> bool:
        """Whether to take another step: reads the clock every rank agrees on (one collective with
        the stop flag), stops after a signal, lets the parts prepare, ends at the epochs or the budget."""
        if self.clock.agree(self.stop_signal is not None):
            self.checkpoint()
            raise Interrupted(self.run_dir, self.step, self.stop_signal or signal.SIGTERM)
        if self.clock.budget:
            self.apply_lr()  # the rate at this clock reading (at the budget's end: lr_final)
        for part in self.parts:
            part.before_step()
        return self.batches.epoch < self.cfg.train.epochs and not self.clock.out_of_time() and not self.stopping()

    def stopping(self) -> bool:
        """Whether a part ends training before its epochs (``train.early_stop``)."""
        return any(part.stopping() for part in self.parts)

    def close(self) -> None:
        """After the budget ran out: evaluate and checkpoint the state reached, unless the last step already was."""
        records = self.held_out.records
        if not self.clock.out_of_time() or (records and records[-1]["step"] == self.step):
            return
        self.held_out.evaluate(self.tally.means())
        self.checkpoint()
