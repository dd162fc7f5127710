"""``mnist``: an ``.npz`` in the Keras layout (x_train, y_train, x_test, y_test), found via
``data.path`` (a file or a folder) or the ``REPARAM_DATA`` folder; with
``data.download=true`` it is fetched once from ``data.url`` and checked against
``data.sha256``."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from ..errors import DataError, require
from ..files import atomic_write_bytes
from .base import Data, Source, changed, register
from .images import load_arrays


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, digest: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically, refusing content whose sha256 is not ``digest``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (OSError, ValueError) as e:
        raise DataError(f"cannot download {url}: {e}; place mnist.npz in $REPARAM_DATA instead") from None
    got = hashlib.sha256(payload).hexdigest()
    if got != digest:
        raise DataError(f"download from {url} has sha256 {got}, expected {digest}; nothing was saved")
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, payload)
    return dest


def mnist_path(cfg) -> Path:
    """Where MNIST is: data.path, then $REPARAM_DATA/mnist.npz, else a download if allowed."""
    candidates = []
    if cfg.path:
        p = Path(cfg.path).expanduser()
        candidates.append(p / "mnist.npz" if p.is_dir() else p)
    folder = Path(os.environ.get("REPARAM_DATA", Path.home() / ".cache" / "reparam"))
    candidates.append(folder / "mnist.npz")
    for p in candidates:
        if p.is_file():
            return p
    if cfg.download:
        return download(cfg.url, folder / "mnist.npz", cfg.sha256)
    raise DataError(
        f"MNIST not found at {' or '.join(map(str, candidates))}; "
        "set data.path=FILE, put mnist.npz in $REPARAM_DATA, or pass data.download=true"
    )


@register("mnist")
class Mnist(Source):
    """MNIST; ``data.name=auto`` picks it for a folder holding ``mnist.npz``. Its own keys:
    ``download``, and ``url`` and ``sha256`` with it."""

    precedence = 20

    def claims(self, path: str) -> bool:
        return (Path(path).expanduser() / "mnist.npz").is_file()

    def check(self, cfg) -> None:
        require(cfg.download or not (changed(cfg, "url") or changed(cfg, "sha256")), "data.url and data.sha256 apply only with data.name=mnist data.download=true")

    def check_unused(self, cfg) -> None:
        require(not cfg.download, f"data.download applies to data.name=mnist only, not {cfg.name}; drop it")
        self.check(cfg)

    def load(self, cfg, columns=None) -> Data:
        return load_arrays(mnist_path(cfg), cfg.test_fraction)
