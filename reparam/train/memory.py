"""What training a configured model takes in memory, estimated before it is built, and the
refusal of what cannot fit this machine.

The model is built on PyTorch's meta device (shapes, no storage), so every architecture,
family, flow, prior and hierarchy is counted by its own code, and one training step's
forward pass runs there too: the bytes that autograd saves for the backward pass, at the
real batch size and K, are the step's activations. A flow's steps are counted at one and at
two steps and extrapolated (each step adds the same weights and activations), so 100,000
steps cost two small builds. A step that reads values rather than shapes cannot run there
(the kumaraswamy family's KL, the spherical family's sampler, an objective of your own): its
activations are then those of the encoder on the batch and of the decoder on its K draws.

Training holds each weight four times (the weight, its gradient, Adam's two moments; one
more for a weight average, ``train.ema``, and for DistributedDataParallel's gradient
buckets), and at times needs more on top: a step's activations (times ``ACTIVATION_SLACK``
for the backward pass's gradients and the allocator's slack: a step's peak measured 1.0-1.9
times the saved bytes on the digits' MLPs and flows), or a checkpoint being written (its
weights and moments serialized twice: each tensor's bytes, then the file's); ``FIXED`` is
what a tiny run takes (~100 MB measured). The peak resident memory of whole runs on the
digits (MLPs of 32 to 3,000 units, K=20, 200 IAF steps, a VampPrior of 2,000 pseudo-inputs,
convolutions, a weight average) came out 0.7-1.25 times the estimate: it refuses what
clearly cannot fit, not what might just fit.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import flows, objectives
from ..distributed import SINGLE, Dist
from ..errors import ConfigError
from ..model import VAE, HierarchicalVAE, build
from ..objectives.labels import Labelled, SemiSupervised

#: Copies of each weight that training keeps: the weight, its gradient, Adam's two moments.
RESIDENT_COPIES = 4
#: A step's memory beyond the tensors saved for its backward pass (gradients of activations, allocator slack).
ACTIVATION_SLACK = 1.25
#: What a run takes whatever its model: the evaluation's, the pictures' and the progress bar's libraries and buffers.
FIXED = 128 * 2**20
MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Estimate:
    """Training memory of a configured model, in bytes: ``resident`` (weights and buffers with every
    copy training keeps), and on top of it at times ``activations`` (one step of ``rows`` examples
    with ``k`` samples each) or ``checkpoint`` (one being written). ``parameters`` counts the
    model's and the objective's."""

    parameters: int
    resident: int
    activations: int
    checkpoint: int
    rows: int
    k: int

    @property
    def total(self) -> int:
        return FIXED + self.resident + max(self.activations, self.checkpoint)


@contextmanager
def on_meta():
    """Tensors made on the meta device, distributions unvalidated (a meta tensor has no values),
    and the random number generators left as they were."""
    validate = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)


def saved_bytes(step: Callable[[], object], held: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``step`` runs, but for
    ``held`` (weights, buffers) and views of them, which take no memory of their own."""
    total, known = 0, {id(t) for t in held}

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if id(t) not in known and id(t._base) not in known:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total


def example_batch(cfg, x_shape: tuple[int, ...], rows: int, classes: int | None):
    """A minibatch of ``rows`` examples as the trainer draws it (on the current default device)."""
    x = torch.zeros(rows, *x_shape)
    if cfg.model.condition != "label":
        return x
    y = torch.zeros(rows, dtype=torch.long)
    if not cfg.data.labeled:
        return Labelled(x, y)
    labelled = cfg.train.labeled_batch_size or min(cfg.data.labeled, rows)
    return SemiSupervised(x, x[:1].expand(labelled, *x_shape), y[:1].expand(labelled), 0.5, 0.5)


def measure(cfg, x_shape: tuple[int, ...], rows: int, columns: list[str] | None = None, classes: int | None = None) -> tuple[int, int, int]:
    """(parameters, bytes of buffers, bytes saved by one training step's forward pass of ``rows``
    examples) of the model ``cfg`` builds, all on the meta device."""
    with on_meta():
        model = build(cfg, x_shape, columns=columns, classes=classes)
        objective = objectives.Objective(cfg.objective, x_shape)
        weights = [*model.parameters(), *objective.parameters()]
        buffers = [*model.buffers(), *objective.buffers()]
        batch = example_batch(cfg, x_shape, rows, classes)
        try:
            saved = saved_bytes(lambda: objective(model, batch, 0, progress=1.0), [*weights, *buffers])
        except (RuntimeError, NotImplementedError, ValueError, TypeError):  # a step that reads values, not shapes
            saved = networks_step(model, x_shape, rows, cfg.objective.k, [*weights, *buffers])
        return sum(p.numel() for p in weights), sum(b.numel() * b.element_size() for b in buffers), saved


def networks_step(model: VAE | HierarchicalVAE, x_shape: tuple[int, ...], rows: int, k: int, held: list[torch.Tensor]) -> int:
    """Bytes saved by the encoder on ``rows`` examples and the decoder on ``k`` draws for each:
    the step of a model whose objective cannot run on the meta device, less the family's own terms."""
    layers = [m for m in model.decoder.modules() if isinstance(m, nn.Linear)]
    if not layers:
        return 0
    return saved_bytes(lambda: (model.encoder(torch.zeros(rows, *x_shape)), model.decoder(torch.zeros(k * rows, layers[0].in_features))), held)


def estimate(cfg, x_shape: tuple[int, ...], columns: list[str] | None = None, classes: int | None = None, dist: Dist = SINGLE) -> Estimate:
    """The training memory of the model ``cfg`` builds for data of ``x_shape`` (one process's share under torchrun)."""
    rows = math.ceil(cfg.train.batch_size / dist.world)
    steps = cfg.latent.flow_steps or (flows.REGISTRY.lookup(cfg.latent.flow).default_steps if cfg.latent.flow != "none" else 0)
    if steps > 2:  # linear in the steps: measured at one and two
        one, two = (measure(with_flow_steps(cfg, s), x_shape, rows, columns, classes) for s in (1, 2))
        parameters, buffers, saved = (a + (steps - 1) * (b - a) for a, b in zip(one, two))
    else:
        parameters, buffers, saved = measure(cfg, x_shape, rows, columns, classes)
    ema = cfg.train.ema > 0
    weight = 4 * parameters  # float32
    resident = weight * (RESIDENT_COPIES + ema + dist.enabled) + buffers
    checkpoint = weight * 2 * (3 + ema)  # the weights, the moments (and the average), serialized twice
    return Estimate(parameters, resident, math.ceil(ACTIVATION_SLACK * saved), checkpoint, rows, cfg.objective.k)


def with_flow_steps(cfg, steps: int):
    out = copy.deepcopy(cfg)
    out.latent.flow_steps = steps
    return out


def available(device: torch.device) -> tuple[int, str] | None:
    """Bytes this process may still allocate on ``device`` and where the number comes from, or None if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free on {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return None
    found = [m for m in (meminfo_available(), cgroup_available()) if m is not None]
    if not found:
        return None
    share = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # torchrun's processes on this machine share it
    free, source = min(found)
    return free // share, source + (f", shared by {share} processes" if share > 1 else "")


def meminfo_available() -> tuple[int, str] | None:
    """MemAvailable of /proc/meminfo (the kernel's estimate of what can be allocated without swapping)."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available memory"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free memory"
    except (OSError, ValueError, AttributeError):
        return None


def cgroup_available() -> tuple[int, str] | None:
    """The room left under this container's memory limit (cgroup v2 memory.max - memory.current), if it sets one."""
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((CGROUP / "memory.current").read_text()), "room under the container's memory limit"
    except (OSError, ValueError):
        return None


def size(n: float) -> str:
    """Bytes as a short human number: 812 MB, 3.4 GB, 2.1 TB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def smaller_sizes(cfg, est: Estimate) -> str:
    """The keys that set what dominates the estimate, the larger part's first."""
    weights = ["model.hidden", "latent.dim"]
    weights += ["latent.flow_steps"] if cfg.latent.flow != "none" else []
    weights += ["prior.components"] if cfg.prior.name in ("mog", "vamp") else []
    weights += ["model.stochastic"] if cfg.model.stochastic else []
    weights += ["model.channels"] if cfg.model.arch == "conv" else []
    steps = ["train.batch_size", *(["objective.k"] if cfg.objective.k > 1 else [])]
    return ", ".join(steps + weights if est.activations > est.resident + est.checkpoint else weights + steps)


def check(cfg, x_shape: tuple[int, ...], device: torch.device, columns: list[str] | None = None, classes: int | None = None,
          dist: Dist = SINGLE, data_bytes: int = 0) -> Estimate | None:  # fmt: skip
    """ConfigError (one line, with the estimate and the limit) when training the configured model
    would not fit the memory ``device`` has left; the estimate otherwise (None where the device
    does not say what it has left). ``data_bytes``: the data set, which the trainer copies onto
    a GPU (in the machine's memory it is already held)."""
    room = available(device)
    if room is None:
        return None
    free, source = room
    est = estimate(cfg, x_shape, columns, classes, dist)
    data = data_bytes if device.type != "cpu" else 0
    if est.total + data > free:
        raise ConfigError(
            f"training this model would run out of memory: it needs about {size(est.total + data)} ({est.parameters:,} parameters, "
            f"{size(est.resident)} with their gradients and Adam's moments, {size(est.checkpoint)} more to write a checkpoint; "
            f"{size(est.activations)} of activations for a step of {est.rows} examples with K={est.k}"
            f"{f'; {size(data)} of data' if data else ''}), more than the {size(free)} of {source} on {device.type}; "
            f"choose smaller sizes ({smaller_sizes(cfg, est)})"
        )
    return est
