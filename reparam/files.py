"""Files written atomically: bytes, JSON, JSON lines, and named tensors in safetensors.

Every write goes to a temporary name in the same folder, is fsynced and renamed over the
target, and the folder is fsynced after the rename, so a crash or a power cut leaves either
the old file or the new one, never half of one. No write replaces a device, a FIFO or a
socket; ``check_output`` is the one rule for a path a command writes (``--out``). Nothing
here unpickles: tensors are safetensors (read through a memory map) and metadata is JSON.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save as st_save

from .errors import OutputError, RunError

FORMAT = "reparam-model/1"


#: The kinds of file that a rename would destroy rather than update: never written over.
SPECIAL = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"))


def special_kind(path: Path) -> str | None:
    """What ``path`` is when it is a device, a FIFO or a socket (a link to one included), else None."""
    try:
        mode = path.stat().st_mode
    except OSError:  # absent, a dangling link or unreadable: nothing there to destroy
        return None
    return next((name for test, name in SPECIAL if test(mode)), None)


def check_output(path: str | Path, overwrite: bool) -> Path:
    """``path`` as a Path where a command may write one file; OutputError (one line) otherwise.

    Refused: a device, a FIFO or a socket (even with ``overwrite``: renaming over one would
    replace it, as ``--out /dev/null`` run as root would replace the system's), a folder, a
    path whose folder does not exist, and unless ``overwrite`` anything already there (a
    link included). Commands call it before any work, and pass ``overwrite=True`` for their
    own default outputs in a run folder (RUN/samples.png), which they rewrite at every call.
    """
    path = Path(path)
    kind = special_kind(path)
    if kind is not None:
        raise OutputError(f"{path} is a {kind}, not a regular file, and is never replaced; choose another --out")
    if path.is_dir():
        raise OutputError(f"{path} is a folder, not a file; name a file with --out")
    if not path.parent.is_dir():
        raise OutputError(f"folder {path.parent} does not exist; create it or choose another --out")
    if not overwrite and (path.is_symlink() or path.exists()):
        raise OutputError(f"{path} already exists; choose another --out, or pass --overwrite to replace it")
    return path


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, rename over ``path``, fsync the folder.

    A crash or a power cut at any point leaves either the old file or the new one, never half
    of one. OutputError, and nothing written, where ``path`` is a device, a FIFO or a socket.
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
        kind = special_kind(path)  # checked last, just before the rename
        if kind is not None:
            raise OutputError(f"{path} is a {kind}, not a regular file; refusing to replace it")
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
