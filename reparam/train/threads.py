"""``train.threads=auto`` as a part of training: the thread count retuned between steps by timed trials."""

from __future__ import annotations

import torch

from ..data import Data, unit
from ..devices import Threads
from . import parts
from .parts import Part, Trainer


class ThreadTrial(Part):
    """``train.threads=auto``: retune the thread count when due, timing ``trial``.

    The trial runs the encoder on one training batch and the decoder on as many prior draws,
    forward and backward like a step (timed by ``devices.Threads.tune`` for 50 ms at least; a
    forward pass of a few milliseconds chose two threads beside a busy neighbour, 3.6x the idle
    epoch), with the RNG state restored and the gradients dropped, so training never sees it
    (and no distribution is built from what the data hold)."""

    def __init__(self, trainer: Trainer, data: Data):
        super().__init__(trainer, data)
        tunable = trainer.device.type == "cpu" and not trainer.dist.enabled
        self.threads = Threads(trainer.cfg.train.threads, tunable=tunable, clock=lambda: parts.clock())

    def before_step(self) -> None:
        if self.threads.due():
            self.threads.tune(self.trial)

    def trial(self) -> None:
        t = self.trainer
        n = min(len(t.batches.train_x), t.cfg.train.batch_size)
        x = unit(t.batches.train_x[:n])
        with torch.random.fork_rng(devices=[]), t.precision.autocast():
            view = t.model.given(torch.zeros(n, dtype=torch.long, device=t.device))  # a conditional model's networks read a label too
            out = view.encode(x), view.decode_mean(view.sample_prior(n))
            torch.stack([o.float().square().mean() for o in out]).sum().backward()
        for p in t.model.parameters():
            p.grad = None
