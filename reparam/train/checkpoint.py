"""Checkpoints: a nested dict of tensors plus a JSON header, in one safetensors file.

``RUN/checkpoints/step-000001234.safetensors`` holds whatever state dict it is given: one
level of named groups of tensors (``{"model": {...}, "optim": {...}}``) stored as
``group.name``, top-level tensors under their own name, and ``state["meta"]`` (anything
JSON can hold) in the file's header. Nothing here knows what a trainer keeps; the trainer's
``state_dict`` / ``load_state_dict`` decide that. Files are written atomically; the newest
``keep`` are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import RunError
from ..files import load_tensors, save_tensors
from ..runs import CHECKPOINTS

META = "meta"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    return sorted((Path(run_dir) / CHECKPOINTS).glob("step-*.safetensors"))


def flatten(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A state dict -> (named tensors, the JSON header): group ``g``'s tensor ``n`` is named ``g.n``."""
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == META:
            continue
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        else:
            tensors.update({f"{key}.{name}": t for name, t in value.items()})
    return tensors, state.get(META, {})


def nest(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``flatten``: names split at their first dot into group and name."""
    state: dict[str, Any] = {META: meta}
    for name, t in tensors.items():
        group, dot, rest = name.partition(".")
        if dot:
            state.setdefault(group, {})[rest] = t
        else:
            state[name] = t
    return state


def save(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as ``checkpoints/step-<step>.safetensors``; keep the newest ``keep``."""
    folder = Path(run_dir) / CHECKPOINTS
    folder.mkdir(exist_ok=True)
    path = folder / f"step-{step:09d}.safetensors"
    tensors, meta = flatten(state)
    save_tensors(path, tensors, {META: json.dumps(meta)})
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The named tensors and the header of one checkpoint file; RunError if it is not a valid one."""
    from safetensors import safe_open

    tensors = load_tensors(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})[META])
    except (KeyError, ValueError, OSError) as e:
        raise RunError(f"{path} has no reparam checkpoint header ({e}); refusing to resume from it") from None
    return tensors, meta


def load(path: Path) -> dict[str, Any]:
    """One checkpoint file as the nested state dict it was written from."""
    return nest(*read(path))


def latest(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The newest checkpoint of a run, as ``read`` gives it (RunError if there is none)."""
    found = list_checkpoints(run_dir)
    if not found:
        raise RunError(f"{run_dir} has no checkpoint to resume from")
    return read(found[-1])
