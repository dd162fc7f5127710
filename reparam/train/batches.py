"""The training batches: data order, dynamic binarization, labels, M2's labelled subset, shards.

``data.shard=true``: each process holds only its part of the training set (on its device,
the host's full copy let go once the trainer is built). The parts are fixed for the run, from a
permutation seeded by ``seed``: rank r holds exactly the rows it trains on in an epoch, its
share of every global batch (``Dist.shard``) summed over the epoch's steps. Each epoch, the shared
data generator draws one number, and each rank permutes its part with a generator seeded from
that number and its rank (``distributed.rank_seed``); the binarization noise is drawn for the
whole global batch on every rank, as without shards, each keeping its rows' draws. What stays as
without shards: the global batch and its size at every step, the gradient as the mean over the
global batch (the same loss scaling), each training example once per epoch, a fresh binarization
each time, and a bit-for-bit resume with the same number of processes. What changes: which
examples share a global batch (one share from each process's part), so the run's numbers differ
from an unsharded run's with the same seed, and from a sharded run with another process count.
With one process the part is the whole set, visited in the order above.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import data as data_mod
from .. import distributed
from ..errors import ConfigError
from ..objectives.labels import Labelled, SemiSupervised
from .parts import Part, Trainer


class Batches(Part):
    """In-memory training images batched by index: an epoch is one pass over a permutation.

    A conditional run keeps the training set's labels (a conditional VAE), or for M2
    (``data.labeled``) a class-balanced labelled subset, the rest the unlabelled pool that an
    epoch passes over; M2's labelled batches come from their own permutation of the subset.
    Its state: the data generator, the epoch's order and position, and the labelled subset's.
    Distributed: every rank draws the whole global batch (same permutation, same binarization
    noise) and keeps its own slice.
    """

    def __init__(self, trainer: Trainer, data: data_mod.Data):
        super().__init__(trainer, data)
        cfg, device, n = trainer.cfg, trainer.device, len(data.train)
        if cfg.train.batch_size != type(cfg.train).batch_size and cfg.train.batch_size > n:  # set by the user (the default is cut quietly)
            trainer.warn(f"train.batch_size={cfg.train.batch_size} is larger than the {n:,} training examples: every step "
                         f"uses all of them; set train.batch_size to at most {n} to silence this")  # fmt: skip
        self.cfg, self.device, self.dist = cfg, device, trainer.dist
        self.part = part(n, cfg.train.batch_size, self.dist, cfg.seed) if cfg.data.shard else None  # data.shard: this rank's rows
        self.train_x = (data.train if self.part is None else data.train[self.part]).to(device)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)  # the same on every rank
        self.epoch_seed = 0  # data.shard: the number this epoch's order of each part is drawn from
        self.dynamic = cfg.data.binarize == "dynamic"
        self.epoch = self.pos = self.lpos = 0
        self.perm: torch.Tensor | None = None  # this epoch's data order
        self.lperm: torch.Tensor | None = None  # M2: the labelled images' current order
        self.global_batch = cfg.train.batch_size  # size of the current global batch
        self.train_y: torch.Tensor | None = None
        self.labelled: tuple[torch.Tensor, torch.Tensor] | None = None
        self.shares = (1.0, 0.0)
        if cfg.model.condition == "label":
            self._labels(data)
        self.n = n if self.part is not None else len(self.train_x)  # the examples an epoch passes over (M2: the unlabelled pool)

    def _labels(self, data: data_mod.Data) -> None:
        assert data.train_labels is not None and data.classes is not None  # data_mod.check_labels
        y = (data.train_labels if self.part is None else data.train_labels[self.part]).to(self.device)
        if not self.cfg.data.labeled:
            self.train_y = y
            return
        idx = data_mod.labelled_subset(data.train_labels, self.cfg.data.labeled, len(data.classes), self.cfg.seed).to(self.device)
        keep = torch.ones(len(y), dtype=torch.bool, device=self.device)
        keep[idx] = False
        self.labelled = (self.train_x[idx], y[idx])
        self.train_x = self.train_x[keep]  # the unlabelled pool: an epoch is one pass over it
        self.shares = (len(self.train_x) / len(y), len(idx) / len(y))

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.cfg.train.batch_size)

    @property
    def passes(self) -> float:
        """Passes over the training set so far, the current epoch's share included."""
        return round(self.epoch + min(self.pos * self.cfg.train.batch_size, self.n) / self.n, 3)

    def order(self) -> torch.Tensor:
        """This epoch's order of the rows held: a permutation from the shared generator, or with
        ``data.shard`` one of this rank's part from the number the shared generator draws."""
        if self.part is None:
            return torch.randperm(len(self.train_x), generator=self.gen, device=self.device)
        self.epoch_seed = int(torch.randint(2**62, (1,), generator=self.gen, device=self.device))
        return self.part_order()

    def part_order(self) -> torch.Tensor:
        own = torch.Generator(device=self.device).manual_seed(distributed.rank_seed(self.epoch_seed, self.dist.rank))
        return torch.randperm(len(self.train_x), generator=own, device=self.device)

    def next(self) -> torch.Tensor | Labelled | SemiSupervised:
        """The batch at ``pos`` of this epoch's permutation, binarized afresh if dynamic; with
        its labels for a conditional VAE, beside a labelled batch for M2. Advances ``pos``."""
        if self.perm is None:
            self.perm = self.order()
        if self.part is not None:
            return self.next_of_part()
        bs = self.cfg.train.batch_size
        idx = self.perm[self.pos * bs : (self.pos + 1) * bs]
        self.pos += 1
        x = self.draw(data_mod.unit(torch.index_select(self.train_x, 0, idx)))  # ~10x faster than x[idx]; uint8 levels to floats
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

    def next_of_part(self) -> torch.Tensor | Labelled:
        """``data.shard``: this rank's share of the global batch at ``pos``, the next rows of its
        part's order; the binarization noise drawn for the whole global batch, this rank's rows kept."""
        assert self.perm is not None
        bs = self.cfg.train.batch_size
        size = min(bs, self.n - self.pos * bs)  # the global batch
        rows = self.dist.shard(size)
        start = self.pos * len(range(bs)[self.dist.shard(bs)])  # every earlier batch of the epoch was full
        idx = self.perm[start : start + len(range(size)[rows])]
        self.pos, self.global_batch = self.pos + 1, size
        x = data_mod.unit(torch.index_select(self.train_x, 0, idx))
        if self.dynamic:
            x = torch.rand((size, *x.shape[1:]), generator=self.gen, dtype=x.dtype, device=self.device)[rows].lt_(x)
        return x if self.train_y is None else Labelled(x, self.train_y[idx])

    def draw(self, x: torch.Tensor) -> torch.Tensor:
        return data_mod.draw_binary(x, self.gen) if self.dynamic else x

    def next_labelled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """M2's labelled batch (``train.labeled_batch_size``, default min(N_l, batch_size)): the
        next images of a permutation of the labelled subset, a fresh one when it runs out."""
        assert self.labelled is not None  # M2 only
        x_l, y_l = self.labelled
        size = self.cfg.train.labeled_batch_size or min(len(x_l), self.cfg.train.batch_size)
        if self.lperm is None or self.lpos + size > len(x_l):
            self.lperm, self.lpos = torch.randperm(len(x_l), generator=self.gen, device=self.device), 0
        idx = self.lperm[self.lpos : self.lpos + size]
        self.lpos += size
        return self.draw(data_mod.unit(torch.index_select(x_l, 0, idx))), y_l[idx]

    def epoch_done(self) -> bool:
        return self.pos >= self.steps_per_epoch

    def next_epoch(self) -> None:
        self.epoch, self.pos, self.perm = self.epoch + 1, 0, None

    def release(self) -> None:
        """Let the training images go (the run is over: the report's memory)."""
        self.train_x, self.perm, self.labelled = self.train_x[:0], None, None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"rng": {"data": self.gen.get_state()}, "meta": {"epoch": self.epoch, "pos": self.pos, "lpos": self.lpos}}
        if self.part is not None:  # each rank's order follows from the epoch's number (the perm saved is rank 0's)
            state["meta"].update(epoch_seed=self.epoch_seed, shard_world=self.dist.world)
        if self.perm is not None:
            state["perm"] = self.perm
        if self.lperm is not None:
            state["lperm"] = self.lperm
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        meta = state["meta"]
        self.gen.set_state(state["rng"]["data"])
        self.perm = state["perm"].to(self.device) if "perm" in state else None
        self.lperm = state["lperm"].to(self.device) if "lperm" in state else None
        self.epoch, self.pos, self.lpos = meta["epoch"], meta["pos"], meta.get("lpos", 0)
        if self.part is not None:
            if meta.get("shard_world") != self.dist.world:
                raise ConfigError(f"this run's training set was sharded over {meta.get('shard_world', 'no')} processes (data.shard); resume it on that many")
            self.epoch_seed = meta["epoch_seed"]
            self.perm = None if self.perm is None else self.part_order()


def part(n: int, batch_size: int, dist: distributed.Dist, seed: int) -> torch.Tensor:
    """Rank r's rows (``data.shard``) of n training examples: as many as its shares of an epoch's
    global batches (``Dist.shard``) sum to, a block of a permutation seeded by ``seed`` (sorted)."""
    full, rest = divmod(n, batch_size)
    sizes = [full * len(range(batch_size)[d.shard(batch_size)]) + len(range(rest)[d.shard(rest)])
             for d in (distributed.Dist(r, dist.world) for r in range(dist.world))]  # fmt: skip
    start = sum(sizes[: dist.rank])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return torch.sort(perm[start : start + sizes[dist.rank]]).values
