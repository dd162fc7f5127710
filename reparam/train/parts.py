"""The pieces of training state around the step, each owning its state and its place in the checkpoint.

A part is built from the trainer (``Part(trainer, data)``, ``None`` from ``make`` when the
run's config does not ask for it) and may answer these calls, all optional:

- ``state_dict()`` -> its entries of the checkpoint: top-level tensors or groups of
  tensors, and ``"meta"``, JSON-safe values for the checkpoint's header; groups (``rng``,
  ``meta``) are shared, each part filling its own keys;
- ``load_state_dict(state)`` takes the whole checkpoint's state and reads its own keys back;
- ``before_step()`` before each step; ``after_step(terms)`` after each optimizer step that
  was taken (not after a skipped one), with its batch-mean terms;
- ``evaluating()`` a context for the weights held-out numbers and model.safetensors
  describe; ``after_evaluation(record)`` after each held-out evaluation, inside that
  context, with its record (on every rank); ``stopping()`` whether the part ends training
  (early stopping); ``at_end()`` when training stops.

The checkpoint's file layout is the sum of the parts' entries, the same as before the loop
was split into parts, so earlier checkpoints resume bit for bit. ``loop.PARTS`` lists them
in the order they are built and restored.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..data import Data
from ..devices import Amp
from ..distributed import Dist
from ..errors import RunError

#: The training clock (tests put a fake one here).
clock = time.perf_counter


class Trainer(Protocol):
    """What parts read from the loop that holds them (``loop.Trainer``)."""

    cfg: Any  # the run's Config
    model: Any  # reparam.model.contract.Model (an nn.Module too)
    device: torch.device
    dist: Dist
    run_dir: Path
    hooks: list[Callable[[dict], None]]
    batches: Any  # batches.Batches
    precision: Precision
    clock: Clock
    tally: Tally
    opt: torch.optim.Optimizer
    step: int
    skipped_steps: int
    parts: list[Part]

    @property
    def total_steps(self) -> int: ...

    def evaluating(self) -> contextlib.AbstractContextManager: ...

    def warn(self, message: str) -> None: ...


class Part:
    """A piece of training state (see the module's docstring); every call is a no-op here."""

    @classmethod
    def make(cls, trainer: Trainer, data: Data) -> Part | None:
        return cls(trainer, data)

    def __init__(self, trainer: Trainer, data: Data):
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self, terms: dict[str, torch.Tensor]) -> None:
        pass

    def evaluating(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def after_evaluation(self, record: dict) -> None:
        pass

    def stopping(self) -> bool:
        return False

    def at_end(self) -> None:
        pass


def merge(state: dict[str, Any], entries: dict[str, Any]) -> None:
    """Add a part's entries to the checkpoint's state: a group (a dict) shared key by key, a tensor as it is."""
    for key, value in entries.items():
        if isinstance(value, dict):
            state.setdefault(key, {}).update(value)
        else:
            state[key] = value


class Noise(Part):
    """The sampling streams of the step: torch's CPU generator (under torchrun every rank's:
    ``state_dict`` is then a collective) and the CUDA one. Another process count than the
    writer's gives each rank a fresh stream, seeded from the step."""

    def state_dict(self) -> dict[str, Any]:
        t = self.trainer
        rng = {"torch": torch.get_rng_state()}
        if t.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(t.device)
        if t.dist.enabled:
            rng.update({f"rank{r}": s for r, s in enumerate(distributed.gather_rng(t.dist, t.device))})
        return {"rng": rng, "meta": {"world": t.dist.world}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        t, rng, meta = self.trainer, state.get("rng", {}), state["meta"]
        if not {"torch", "data"} <= set(rng):
            raise RunError(f"the checkpoint lacks rng.{'torch' if 'torch' not in rng else 'data'}; refusing to resume from it")
        own = rng.get(f"rank{t.dist.rank}") if meta.get("world", 1) == t.dist.world else None
        if t.dist.enabled and own is None:
            torch.manual_seed(distributed.rank_seed(t.cfg.seed + meta["step"], t.dist.rank))
        else:
            torch.set_rng_state(rng["torch"] if own is None else own)
        if t.device.type == "cuda" and "cuda" in rng and not t.dist.enabled:
            torch.cuda.set_rng_state(rng["cuda"], t.device)


class Clock(Part):
    """Training seconds across resumes, and the wall-clock budget (``train.budget``; 0: none).

    ``seconds`` is the reading every rank agreed on (``agree``); ``elapsed()`` this rank's own.
    """

    def __init__(self, trainer: Trainer, data: Data):
        super().__init__(trainer, data)
        self.budget = trainer.cfg.train.budget_seconds
        self.restore(0.0)

    def elapsed(self) -> float:
        return round(self._offset + clock() - self._start, 3)

    def restore(self, seconds: float) -> None:
        """Set the clock to ``seconds`` (a resume; a rollback, whose time was spent)."""
        self._offset, self._start, self.seconds = seconds, clock(), seconds

    def agree(self, stop: bool) -> bool:
        """One collective: whether any rank asks to stop, and the clock every rank reads."""
        t = self.trainer
        stop, self.seconds = distributed.agree(t.dist, stop, self.elapsed(), t.device)
        return stop

    def out_of_time(self) -> bool:
        return self.budget > 0 and self.seconds >= self.budget

    def state_dict(self) -> dict[str, Any]:
        return {"meta": {"seconds": self.elapsed()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.restore(state["meta"]["seconds"])


class Tally(Part):
    """This epoch's running sums of the batch-mean terms (and a count), on the device until read."""

    def __init__(self, trainer: Trainer, data: Data):
        super().__init__(trainer, data)
        self.sums: dict[str, torch.Tensor] = {}
        self.last: dict[str, float] = {}  # the last closed epoch's means

    def after_step(self, terms: dict[str, torch.Tensor]) -> None:
        for key, value in {**terms, "count": torch.ones(())}.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def reduced(self) -> dict[str, torch.Tensor]:
        """The sums; distributed, averaged over ranks (each summed its own shard)."""
        t = self.trainer
        if not (t.dist.enabled and self.sums):
            return dict(self.sums)
        keys = sorted(self.sums)
        total = distributed.sum_(torch.stack([torch.as_tensor(self.sums[k], device=t.device) for k in keys]))
        return dict(zip(keys, total / t.dist.world))

    def means(self) -> dict[str, float]:
        """``train_<term>`` means over the steps summed so far; the last closed epoch's if there were none."""
        sums = self.reduced()
        count = float(sums.pop("count", 0.0))
        return {f"train_{k}": float(v) / count for k, v in sums.items()} if count else self.last

    def close(self) -> dict[str, float]:
        """End the epoch: its means (none if every step was skipped), and fresh sums."""
        self.last, self.sums = (self.means() if self.sums else {}), {}
        return self.last

    def mean(self, key: str) -> float:
        return float(self.sums.get(key, 0.0)) / float(self.sums["count"])

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.reduced()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = dict(state.get("sums", {}))


class Precision(Part, Amp):
    """Autocast and, for fp16, the loss scaler (``train.precision``), whose state is kept."""

    def __init__(self, trainer: Trainer, data: Data):
        Part.__init__(self, trainer, data)
        Amp.__init__(self, trainer.cfg.train.precision, trainer.device.type)

    def state_dict(self) -> dict[str, Any]:
        return {"meta": {"scaler": self.state()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_state(state["meta"].get("scaler") or {})


class Bar:
    """The progress bar of ``fit`` (rank 0): steps, or seconds under a budget; the epoch's running loss and KL."""

    def __init__(self, trainer: Trainer, show: bool):
        self.t, budget = trainer, trainer.clock.budget
        total, unit = (math.ceil(budget), "s") if budget else (trainer.total_steps, "step")
        self.bar = tqdm(total=total, disable=not show, unit=unit, dynamic_ncols=True, leave=False)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def update(self) -> None:
        t, bar = self.t, self.bar
        bar.n = min(int(t.clock.seconds), bar.total) if t.clock.budget else t.step
        if t.batches.pos % 20 == 1 and "count" in t.tally.sums and not bar.disable:
            bar.set_description(f"epoch {t.batches.epoch + 1}" + ("" if t.clock.budget else f"/{t.cfg.train.epochs}"), refresh=False)
            bar.set_postfix(loss=f"{t.tally.mean('loss'):.2f}", kl=f"{t.tally.mean('kl'):.2f}", refresh=False)
        bar.update(0)
