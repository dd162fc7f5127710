"""Multi-process data parallel training with torch.distributed, launched by ``torchrun``.

``torchrun --nproc_per_node N -m reparam train ...`` sets RANK, WORLD_SIZE and
LOCAL_RANK; only then is a process group started (gloo on CPU, nccl on GPU), so one
process pays nothing. Every rank holds the whole data set in memory and draws the same
permutation and the same binarization noise from the shared seed; rank r trains on its
contiguous slice of each global batch, so the global batch (and the learning rate)
equal those of one process with the same ``train.batch_size``. Gradients are averaged by
DistributedDataParallel with each rank's loss scaled by world / global batch, which makes
the averaged gradient exactly that of the global batch mean even when the last batch of
an epoch splits unevenly. The sampling noise of z differs per rank (its own seed stream;
each rank's RNG state goes into the checkpoints). Only rank 0 writes files.

Several machines: start the same command on each, with torchrun's rendezvous options, e.g.
``torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29400
--rdzv_id JOB -m reparam train ... --out RUN``. Every node needs the data at the same path,
and RUN should be on a file system all nodes see (rollback and --resume read checkpoints
on every rank).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank of world (world 1: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """Rank r's contiguous part of n items (as torch.tensor_split: the first n % world get one more)."""
        q, extra = divmod(n, self.world)
        start = self.rank * q + min(self.rank, extra)
        return slice(start, start + q + (self.rank < extra))


SINGLE = Dist()


def from_env() -> Dist:
    """The torchrun variables if they are set (and name more than one process), else SINGLE."""
    if "WORLD_SIZE" not in os.environ:
        return SINGLE
    try:
        world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (set by torchrun)") from None
    return Dist(rank, world, local) if world > 1 else SINGLE


def check_sizes(d: Dist, n_train: int, n_test: int, batch_size: int, n_valid: int | None = None) -> None:
    """ConfigError when some rank would get no data (``n_valid``: data.validation's rows, None without)."""
    for what, n in (("training", n_train), ("test", n_test), ("validation", n_valid)):
        if n is not None and d.world > n:
            raise ConfigError(f"{d.world} processes but the {what} set holds {n} images; use --nproc_per_node <= {n}")
    if d.world > batch_size:
        raise ConfigError(f"{d.world} processes but train.batch_size={batch_size}; each process needs at least one image per batch")


def init(d: Dist, device: torch.device) -> None:
    """Join the process group torchrun set up (env:// rendezvous)."""
    if not d.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


#: Set while several runs share this process's group (``one_group``): a run's end keeps it.
_SHARED = [False]


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized() and not _SHARED[0]:
        dist.destroy_process_group()


@contextlib.contextmanager
def one_group() -> Iterator[None]:
    """Runs one after another in this process (an ensemble's members under torchrun) join the
    process group once and leave it at the end (a group torn down and joined again hangs gloo's rendezvous)."""
    _SHARED[0] = True
    try:
        yield
    finally:
        _SHARED[0] = False
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """A seed for rank r's sampling noise, distinct per rank, 63 bits."""
    return (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019 * (rank + 1)) % 2**63


class ModelAndObjective(nn.Module):
    """The model and its objective module as one module: DDP synchronizes the gradients of
    everything its forward, objective(model, x, ...), reaches (the VAE and a learned baseline)."""

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, x: torch.Tensor, *args):
        return self.objective(self.model, x, *args)


def wrap(model: nn.Module, objective: nn.Module, d: Dist, device: torch.device) -> DistributedDataParallel:
    """DDP around objective(model, x); buffers are not broadcast (every rank computes them alike)."""
    ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(ModelAndObjective(model, objective), device_ids=ids, broadcast_buffers=False)


def sum_(t: torch.Tensor) -> torch.Tensor:
    """Sum of t over ranks (a new tensor)."""
    out = t.detach().clone()
    dist.all_reduce(out)
    return out


def global_mean(t: torch.Tensor, global_batch: int) -> torch.Tensor:
    """Mean over the global batch of this rank's rows t (B_rank, ...): (...), the same on every rank."""
    return sum_(t.sum(0)) / global_batch


def gather_rng(d: Dist, device: torch.device) -> list[torch.Tensor]:
    """Every rank's CPU torch RNG state (uint8), in rank order, on every rank."""
    state = torch.get_rng_state().to(device)
    out = [torch.empty_like(state) for _ in range(d.world)]
    dist.all_gather(out, state)
    return [s.cpu() for s in out]


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def agree(d: Dist, flag: bool, seconds: float, device: torch.device) -> tuple[bool, float]:
    """(``flag`` on any rank, the largest ``seconds``), the same on every rank: one all-reduce,
    so all ranks stop at the same step and a budget's schedule gives them the same rate."""
    if not d.enabled:
        return flag, seconds
    both = torch.tensor([float(flag), seconds], dtype=torch.float64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return bool(both[0] > 0), float(both[1])
