"""Files written atomically: bytes, JSON, JSON lines, and named tensors in safetensors.

Every write goes to a temporary name in the same folder, is fsynced and renamed over the
target, and the folder is fsynced after the rename, so a crash or a power cut leaves either
the old file or the new one, never half of one. Nothing here unpickles: tensors are
safetensors (read through a memory map) and metadata is JSON.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save as st_save

from .errors import RunError

FORMAT = "reparam-model/1"


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, rename over ``path``, fsync the folder.

    A crash or a power cut at any point leaves either the old file or the new one, never half
    of one.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # name the file asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
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
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable: the new name is an entry of the folder, not of the file."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform or file system without folder handles (Windows): nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # the file system does not sync folders
            raise
    finally:
        os.close(fd)


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


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(tensors, metadata={"format": FORMAT, **meta}))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Named tensors from a safetensors file, read through a memory map (never whole into memory)."""
    try:
        return st_load_file(path)
    except FileNotFoundError:
        raise RunError(f"{path} is missing; the run has no checkpoint yet") from None
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise RunError(f"{path} is not a valid safetensors checkpoint ({e}); refusing to load it") from None
