"""The weight average (``train.ema``) as a part of training: the example of a part that only answers the loop's calls."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .. import optim
from ..data import Data
from ..errors import RunError
from .parts import Part, Trainer


class Average(Part):
    """An exponential moving average of the weights (``train.ema``): held-out numbers and
    model.safetensors see it, and at the end it becomes the model."""

    @classmethod
    def make(cls, trainer: Trainer, data: Data) -> Part | None:
        return cls(trainer, data) if trainer.cfg.train.ema else None

    def __init__(self, trainer: Trainer, data: Data):
        super().__init__(trainer, data)
        self.average = optim.WeightAverage(trainer.model.parameters(), trainer.cfg.train.ema)

    def after_step(self, terms: dict[str, torch.Tensor]) -> None:
        self.average.update()

    def evaluating(self) -> contextlib.AbstractContextManager:
        return self.average.swapped()

    def at_end(self) -> None:
        self.average.apply()

    def state_dict(self) -> dict[str, Any]:
        tensors, updates = self.average.state()
        return {"average": tensors, "meta": {"average_updates": updates}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "average" not in state:
            raise RunError("the checkpoint holds no weight average, though the run's config sets train.ema; resume a run that trained with it")
        self.average.load_state(state["average"], state["meta"]["average_updates"])
