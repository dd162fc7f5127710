"""Selection on the validation set (``data.validation``): the best weights by a validation metric
(``train.keep_best``) and early stopping (``train.early_stop``), as a part of training."""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import objectives, optim, runs
from ..config import SELECTABLE
from ..data import Data
from .parts import Part, Trainer


class Selection(Part):
    """The weights of the best evaluation so far by ``val_<train.keep_best>``, its step, epoch and
    value, and how many evaluations since (``waiting``; those during the KL warm-up do not count).

    After ``train.early_stop`` such evaluations training stops. At the end the kept weights
    become the model (after a weight average's ``at_end``: ``loop.PARTS`` lists this part last)
    and model.safetensors, so the final test evaluation, the pictures and ``reparam eval``
    describe them. The kept weights and counters are checkpointed: a resume continues exactly.
    """

    @classmethod
    def make(cls, trainer: Trainer, data: Data) -> Part | None:
        return cls(trainer, data) if trainer.cfg.train.keep_best else None

    def __init__(self, trainer: Trainer, data: Data):
        super().__init__(trainer, data)
        self.metric, self.patience = trainer.cfg.train.keep_best, trainer.cfg.train.early_stop
        self.sign = SELECTABLE[self.metric]
        self.best: dict[str, torch.Tensor] | None = None  # the model's state_dict at the best evaluation
        self.best_at: dict[str, Any] | None = None  # its step, epoch and value
        self.waiting = 0
        self.stopped = False

    def better(self, value: float) -> bool:
        """Whether ``value`` beats the best so far (a non-finite value never does, unless nothing came before)."""
        if self.best_at is None:
            return True
        best = self.best_at["value"]
        return math.isfinite(value) and (not math.isfinite(best) or self.sign * (value - best) > 0)

    def warming_up(self) -> bool:
        """Whether the KL weight is still below ``objective.beta`` (its warm-up) at the trainer's step."""
        t, cfg = self.trainer, self.trainer.cfg.objective
        progress = optim.progress(t.step, t.total_steps, t.clock.seconds, t.clock.budget)
        return objectives.beta_at(cfg, t.step, progress) < cfg.beta

    def after_evaluation(self, record: dict) -> None:
        key = f"val_{self.metric}"
        if key not in record:
            raise RuntimeError(f"the evaluation recorded no {key}")  # config.check_selection admits only recorded metrics
        value = float(record[key])
        if self.better(value):
            self.best = {k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()}
            self.best_at, self.waiting = {"step": record["step"], "epoch": record["epoch"], "value": value}, 0
        elif not self.warming_up():
            self.waiting += 1
        self.stopped = bool(self.patience) and self.waiting >= self.patience

    def stopping(self) -> bool:
        return self.stopped

    def at_end(self) -> None:
        """The kept weights become the model, and model.safetensors (rank 0)."""
        t = self.trainer
        if self.best is None or self.best_at is None:
            return
        t.model.load_state_dict(self.best)
        if t.dist.is_main:
            info = runs.read_json(t.run_dir / runs.STATE_JSON)
            runs.write_weights(t.run_dir, t.model, self.best_at["step"], self.best_at["epoch"], info["x_shape"], info["checkpoint"])

    def kept(self) -> dict[str, Any]:
        """What summary.json says of the weights it describes: ``best`` (by which metric, when, its value)."""
        assert self.best_at is not None
        return {"weights": "best", "metric": f"val_{self.metric}", **self.best_at}

    def state_dict(self) -> dict[str, Any]:
        meta = {"best_metric": self.metric, "best_at": self.best_at, "best_waiting": self.waiting, "stopped_early": self.stopped}
        return {"meta": meta, **({} if self.best is None else {"best": self.best})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        meta = state["meta"]
        if meta.get("best_metric") != self.metric:
            return  # a checkpoint without selection (or by another metric): selection starts here
        self.best = {k: v.to(self.trainer.device) for k, v in state["best"].items()} if "best" in state else None
        self.best_at, self.waiting, self.stopped = meta["best_at"], meta["best_waiting"], meta["stopped_early"]
