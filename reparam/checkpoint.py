"""Checkpoints: everything a run needs to continue bit for bit, in one safetensors file.

``RUN/checkpoints/step-000001234.safetensors`` holds the model weights (``model.*``), the
optimizer tensors (``optim.*``), every RNG state (``rng.*``), the epoch's data order and
position, and the running sums of the epoch's training terms; its header carries the rest
as JSON (step, epoch, learning rates, counters). Each file is written atomically; the
newest ``keep`` are kept. ``model.safetensors`` and ``state.json`` at the top of the run
mirror the newest one for ``reparam.load``. A checkpoint never holds a non-finite weight.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import distributed, runs
from .errors import RunError

if TYPE_CHECKING:
    from .train import Trainer

FOLDER = "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    return sorted((run_dir / FOLDER).glob("step-*.safetensors"))


def _prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def _unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def capture(t: "Trainer") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The trainer's complete state as named tensors plus JSON-safe metadata."""
    optim, groups = runs.optimizer_tensors(t.opt)
    tensors = {**_prefixed("model", t.model.state_dict()), **optim}
    tensors.update({"rng.torch": torch.get_rng_state(), "rng.data": t.gen.get_state()})
    if t.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(t.device)
    if t.dist.enabled:  # every rank's sampling stream (a collective: all ranks are here)
        tensors.update({f"rng.rank{r}": s for r, s in enumerate(distributed.gather_rng(t.dist, t.device))})
    tensors.update(_prefixed("sums", t.reduced_sums()))
    if t.perm is not None:
        tensors["perm"] = t.perm
    meta = {k: getattr(t, k) for k in ("step", "epoch", "pos", "rollbacks", "skipped_steps")}
    meta.update(seconds=t.elapsed(), param_groups=groups, x_shape=list(t.model.x_shape), world=t.dist.world, scaler=t.amp.state())
    return tensors, meta


def _restore_rng(t: "Trainer", tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """This rank's sampling stream: its saved state, or (another process count) a fresh one."""
    own = tensors.get(f"rng.rank{t.dist.rank}") if meta.get("world", 1) == t.dist.world else None
    if t.dist.enabled and own is None:
        torch.manual_seed(distributed.rank_seed(t.cfg.seed + meta["step"], t.dist.rank))
    else:
        torch.set_rng_state(tensors["rng.torch"] if own is None else own)
    if t.device.type == "cuda" and "rng.cuda" in tensors and not t.dist.enabled:
        torch.cuda.set_rng_state(tensors["rng.cuda"], t.device)
    t.gen.set_state(tensors["rng.data"])


def restore(t: "Trainer", tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Put a captured state back into the trainer (the inverse of ``capture``)."""
    weights = _unprefixed("model", tensors)
    runs.check_state_dict(t.model, weights, Path("checkpoint"))
    t.model.load_state_dict(weights)
    runs.restore_optimizer(t.opt, tensors, meta["param_groups"])
    t.amp.load_state(meta.get("scaler") or {})
    _restore_rng(t, tensors, meta)
    t.sums = _unprefixed("sums", tensors)
    t.perm = None if tensors.get("perm") is None else tensors["perm"].to(t.device)
    for key in ("step", "epoch", "pos", "rollbacks", "skipped_steps"):
        setattr(t, key, meta[key])
    t.restore_clock(meta["seconds"])
    t.model.on_step(t.step)  # schedules are functions of the step
    t.apply_lr()


def finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.state_dict().values() if p.is_floating_point())


def save(t: "Trainer", keep: int) -> Path | None:
    """Write a checkpoint of ``t``; returns None (writing nothing) if any weight is not finite."""
    if not finite(t.model):
        return None
    tensors, meta = capture(t)
    folder = t.run_dir / FOLDER
    path = folder / f"step-{t.step:09d}.safetensors"
    if not t.dist.is_main:
        distributed.barrier(t.dist)  # rank 0 writes; the others wait until the file exists
        return path
    folder.mkdir(exist_ok=True)
    runs.save_tensors(path, tensors, {"meta": json.dumps(meta)})
    runs.save_tensors(t.run_dir / runs.WEIGHTS, t.model.state_dict(), {"step": str(t.step)})
    runs.write_json(t.run_dir / runs.STATE_JSON, {"step": t.step, "epoch": t.epoch, "x_shape": meta["x_shape"], "checkpoint": path.name})
    for old in list_checkpoints(t.run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    distributed.barrier(t.dist)
    return path


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of one checkpoint file; RunError if it is not a valid one."""
    from safetensors import safe_open

    tensors = runs.load_tensors(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["meta"])
    except (KeyError, ValueError, OSError) as e:
        raise RunError(f"{path} has no reparam checkpoint header ({e}); refusing to resume from it") from None
    missing = [k for k in ("rng.torch", "rng.data") if k not in tensors]
    if missing:
        raise RunError(f"{path} lacks {missing[0]}; refusing to resume from it")
    return tensors, meta


def latest(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The newest checkpoint of a run (RunError if there is none)."""
    found = list_checkpoints(run_dir)
    if not found:
        raise RunError(f"{run_dir} has no checkpoint to resume from")
    return read(found[-1])
