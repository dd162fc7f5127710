"""Where the model runs and in which float format: device, mixed precision, memory format.

``train.precision``: ``fp32`` (no autocast); ``bf16`` (autocast to bfloat16, on CPU or a
GPU that has it); ``fp16`` (autocast to float16 with a GradScaler: the loss is scaled up
before backward so small gradients survive float16, and a step whose scaled gradients
overflow is skipped while the scale backs off; Micikevicius et al. 2018). Losses,
log-probabilities and evaluation stay in float32: the model casts network outputs back
before building distributions.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TypeVar

import torch
from torch import nn

from .errors import ConfigError

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("cpu", "cuda", "auto")


def set_threads(n: int, fresh: bool = False) -> None:
    """torch's thread count (0 keeps torch's default), at most this machine's cores.

    A fresh run asking for more threads than cores is refused (torch crashes with tens of
    thousands); a run moved to a smaller machine (resume, eval) runs on the cores there.
    """
    import os

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
