"""Where the model runs and in which float format: device, mixed precision, memory format.

``train.precision``: ``fp32`` (no autocast); ``bf16`` (autocast to bfloat16, on CPU or a
GPU that has it); ``fp16`` (autocast to float16 with a GradScaler: the loss is scaled up
before backward so small gradients survive float16, and a step whose scaled gradients
overflow is skipped while the scale backs off; Micikevicius et al. 2018). Losses,
log-probabilities and evaluation stay in float32: the model casts network outputs back
before building distributions.

``train.threads``: how many CPU threads torch uses (``Threads``). ``auto`` times the
networks forward and backward with 1, 2, 4, ... up to the CPUs this process may use and keeps the fastest
count, again every ``RETUNE_SECONDS`` (or less often, so trials stay under ``TRIAL_SHARE``
of the time): on two cores, two threads were 10% faster than one for the MNIST MLP on an
idle machine and 6.5x slower beside one busy process (each op's threads wait for the one
that shares its core), so the count follows the machine's state as it changes.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import TypeVar

import torch
from torch import nn

from .errors import ConfigError

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("cpu", "cuda", "auto")


def set_threads(n: int | str, fresh: bool = False) -> None:
    """torch's thread count (0 keeps torch's default; ``auto`` is left to ``Threads``), at most this machine's cores.

    A fresh run asking for more threads than cores is refused (torch crashes with tens of
    thousands); a run moved to a smaller machine (resume, eval) runs on the cores there.
    """
    import os

    if not isinstance(n, int):  # auto: Threads measures
        return
    cores = os.cpu_count() or 1
    if fresh and n > cores:
        raise ConfigError(f"train.threads={n} exceeds this machine's {cores} CPU cores; choose at most {cores} (0: torch's default)")
    if n:
        torch.set_num_threads(min(n, cores))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """cpu, cuda (the process's local GPU under torchrun) or auto; ConfigError without a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA GPU is available; use train.device=cpu")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def check_precision(precision: str, device: torch.device) -> None:
    """ConfigError for a precision this device cannot train in."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"train.precision=fp16 needs a CUDA GPU (its GradScaler guards float16 gradients); "
            f"on {device.type} use train.precision=bf16 or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.precision=bf16 but this GPU has no bfloat16 support; use train.precision=fp16")


class Amp:
    """Autocast plus, for fp16, loss scaling. With fp32 every method is a plain pass-through."""

    def __init__(self, precision: str, device_type: str):
        self.dtype, self.device_type = DTYPES[precision], device_type
        self.scaler = torch.amp.GradScaler(device_type) if precision == "fp16" else None

    def autocast(self):
        return nullcontext() if self.dtype is None else torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, opt: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true size (before norms and clipping)."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)

    def overflow_only(self, loss: torch.Tensor) -> bool:
        """True when only the scaled gradients overflowed: the scaler skips that step itself."""
        return self.scaler is not None and bool(torch.isfinite(loss.detach()))

    def step(self, opt: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            opt.step()
            return
        self.scaler.step(opt)
        self.scaler.update()

    def state(self) -> dict:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


M = TypeVar("M", bound=nn.Module)


def prepare(model: M, channels_last: bool, compile: bool) -> M:
    """Optionally put conv weights in channels_last format and torch.compile the networks.

    ``Module.compile`` compiles in place, so parameter names (and checkpoints) are unchanged.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented, absent from torch's overloads; only 4-d weights change
    if compile:
        model.get_submodule("encoder").compile()
        model.get_submodule("decoder").compile()
    return model


#: train.threads=auto: seconds between timed trials at least, and the largest share of time they may take.
RETUNE_SECONDS, TRIAL_SHARE = 30.0, 0.02
#: Counts within this factor of the fastest are ties, and the smallest of them wins (it degrades least under load).
TIE = 1.10
#: Each timed measurement repeats the trial for at least this long: a trial of a few milliseconds
#: beside a busy neighbour timed whichever thread got the core, and chose 2 threads in one round of 2.
MIN_MEASURE_SECONDS = 0.05


def cpus_available() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def candidates(cpus: int) -> list[int]:
    """Thread counts a trial compares: 1, 2, 4, ... and ``cpus`` itself."""
    out, n = [], 1
    while n < cpus:
        out.append(n)
        n *= 2
    return out + [cpus]


def fastest(seconds: dict[int, float], tie: float = TIE) -> int:
    """The smallest thread count whose time is within ``tie`` of the fastest."""
    best = min(seconds.values())
    return min(n for n, s in seconds.items() if s <= best * tie)


class Threads:
    """``train.threads``: N fixes torch's thread count, 0 keeps torch's default, ``auto`` measures.

    ``auto`` tunes only where the choice is ours: on a CPU device, in a single process
    (torchrun gives each process its own threads) and without OMP_NUM_THREADS set. The
    thread count can change the last bits of results (a reduction splits differently), so a
    bit-for-bit repeat or resume wants a fixed ``train.threads``.
    """

    def __init__(self, setting: int | str, tunable: bool = True, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.auto = setting == "auto" and tunable and "OMP_NUM_THREADS" not in os.environ
        if isinstance(setting, int) and setting > 0:
            set_threads(setting)  # at most the cores here (a run resumed on a smaller machine)
        self.cpus = cpus_available()
        self.last, self.interval = -float("inf"), RETUNE_SECONDS
        self.history: list[dict[int, float]] = []  # the trials' median seconds per count, for tests and logs

    def due(self) -> bool:
        return self.auto and self.cpus > 1 and self.clock() - self.last >= self.interval

    def tune(self, trial: Callable[[], object], repeats: int = 3) -> int:
        """Time ``trial`` at each candidate count (one warm-up, then the median of ``repeats``
        measurements, each repeating it for ``MIN_MEASURE_SECONDS`` at least); keep the fastest."""
        start, seconds = self.clock(), {}
        for n in candidates(self.cpus):
            torch.set_num_threads(n)
            trial()
            times = []
            for _ in range(repeats):
                t0, calls = self.clock(), 0
                while not calls or self.clock() - t0 < MIN_MEASURE_SECONDS:
                    trial()
                    calls += 1
                times.append((self.clock() - t0) / calls)
            seconds[n] = statistics.median(times)
        best = fastest(seconds)
        torch.set_num_threads(best)
        self.history.append(seconds)
        self.last = self.clock()
        self.interval = max(RETUNE_SECONDS, (self.last - start) / TRIAL_SHARE)
        return best
