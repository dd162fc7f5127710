"""The run folder: atomic file writes, checkpoints in safetensors, and loading a run.

Layout of a run folder::

    config.json          the resolved config
    metrics.jsonl        one JSON object per held-out evaluation
    model.safetensors    the VAE's weights (the newest checkpoint's)
    state.json           step, epoch, image shape and the newest checkpoint's name
    checkpoints/         the newest few full training states (see checkpoint.py)
    summary.json         final test metrics
    samples.png, reconstructions.png

Nothing here unpickles: weights are safetensors and metadata is JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import ReparamError, RunError

CONFIG, METRICS, WEIGHTS, STATE_JSON, SUMMARY = "config.json", "metrics.jsonl", "model.safetensors", "state.json", "summary.json"
FORMAT = "reparam-model/1"


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any point leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path} is missing; is {path.parent} a reparam run folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not valid JSON ({e}); the run folder is damaged") from None


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object per line; an absent file is an empty list."""
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not valid JSON lines ({e}); the run folder is damaged") from None


def prepare_run_dir(out: str | Path, overwrite: bool) -> Path:
    """Create ``out``; refuse a folder that already holds a run unless ``overwrite``."""
    out = Path(out)
    if (out / CONFIG).exists() and not overwrite:
        raise RunError(f"{out} already holds a run; choose another --out or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write to {out}: {e.strerror or e}; choose another --out") from None
    return out


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(tensors, metadata={"format": FORMAT, **meta}))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise RunError(f"{path} is missing; the run has no checkpoint yet") from None
    try:
        return st_load(payload)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise RunError(f"{path} is not a valid safetensors checkpoint ({e}); refusing to load it") from None


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Flatten an optimizer's state_dict into named tensors plus JSON-safe param groups."""
    sd = opt.state_dict()
    tensors = {
        f"optim.{idx}.{name}": torch.as_tensor(value)
        for idx, state in sd["state"].items()
        for name, value in state.items()
    }
    return tensors, sd["param_groups"]


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def check_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights whose names or shapes do not match the model the config builds."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise RunError(f"{path} does not match config.json ({what}); refusing to load it")
    for key, value in expected.items():
        if tensors[key].shape != value.shape:
            raise RunError(
                f"{path}: {key} has shape {tuple(tensors[key].shape)}, config.json needs "
                f"{tuple(value.shape)}; refusing to load it"
            )


def load(run_dir: str | Path, device: str = "cpu"):
    """Rebuild the VAE of a finished or running run folder, in eval mode.

    Raises RunError for a missing folder or a checkpoint that fails validation.
    """
    from . import config, model as model_mod

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} does not exist")
    try:
        cfg = config.from_dict(read_json(run_dir / CONFIG))
    except ReparamError as e:
        raise RunError(f"{run_dir / CONFIG}: {e}") from None
    info = read_json(run_dir / STATE_JSON) if (run_dir / STATE_JSON).exists() else {}
    x_shape = tuple(info.get("x_shape") or ())
    if not x_shape:
        raise RunError(f"{run_dir} has no checkpoint yet ({STATE_JSON} is missing)")
    vae = model_mod.build(cfg, x_shape)
    tensors = load_tensors(run_dir / WEIGHTS)
    check_state_dict(vae, tensors, run_dir / WEIGHTS)
    vae.load_state_dict(tensors)
    vae.config = cfg
    return vae.to(device).eval()
