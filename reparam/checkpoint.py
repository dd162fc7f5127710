"""Checkpoints: a nested dict of tensors plus a JSON header, in one safetensors file.

``RUN/checkpoints/step-000001234.safetensors`` holds whatever state dict it is given: one
level of named groups of tensors (``{"model": {...}, "optim": {...}}``) stored as
``group.name``, top-level tensors under their own name, and ``state["meta"]`` (anything
JSON can hold) in the file's header. Nothing here knows what a trainer keeps; the trainer's
``state_dict`` / ``load_state_dict`` decide that. Files are written atomically; the newest
``keep`` are kept. It lives with the run folder: training writes checkpoints, and the
commands that read a run (``eval``'s gradient lab) read them here, without the loop.
Layouts of earlier versions are brought to today's once, as they are read (``upgrade``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .errors import RunError
from .files import load_tensors, save_tensors
from .runs import CHECKPOINTS, LEGACY_BASELINE

META = "meta"


def finite(*modules: torch.nn.Module) -> bool:
    """Whether every floating-point tensor of the modules' state is finite (only such states are saved)."""
    return all(bool(torch.isfinite(t).all()) for m in modules for t in m.state_dict().values() if t.is_floating_point())


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


def upgrade(state: dict[str, Any]) -> dict[str, Any]:
    """A nested state in today's layout: reparam 0.1 kept the score-function baseline's
    weights among the model's (``model.baseline.*``); they move to ``objective``."""
    model = state.get("model", {})
    legacy = [name for name in model if name.startswith(LEGACY_BASELINE)]
    if legacy:
        state["model"] = {k: v for k, v in model.items() if k not in legacy}
        state["objective"] = {**state.get("objective", {}), **{k: model[k] for k in legacy}}
    return state


def load(path: Path) -> dict[str, Any]:
    """One checkpoint file as the nested state dict it was written from, in today's layout."""
    return upgrade(nest(*read(path)))


def latest(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The newest checkpoint of a run, as ``read`` gives it (RunError if there is none)."""
    found = list_checkpoints(run_dir)
    if not found:
        raise RunError(f"{run_dir} has no checkpoint to resume from")
    return read(found[-1])


def latest_state(run_dir: Path) -> dict[str, Any]:
    """The newest checkpoint of a run as a nested state dict in today's layout (RunError if there is none)."""
    return upgrade(nest(*latest(run_dir)))
