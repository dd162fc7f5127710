"""``file``: any ``.npz`` (Keras layout, or a single array) or ``.npy`` array of images with
values in [0, 1] or 0..255 (read, and laid out, by ``images.py``)."""

from __future__ import annotations

from pathlib import Path

from .base import Data, Source, changed, needs_path, register
from .images import load_arrays

ARRAY_SUFFIXES = (".npz", ".npy")


@register("file")
class File(Source):
    """An .npz/.npy file of images; ``data.name=auto`` picks it for a path with that suffix."""

    precedence = 40
    splits = True

    def claims(self, path: str) -> bool:
        return Path(path).expanduser().suffix.lower() in ARRAY_SUFFIXES

    def check(self, cfg) -> None:
        needs_path(cfg, "FILE")

    def load(self, cfg, columns=None) -> Data:
        return load_arrays(Path(cfg.path).expanduser(), cfg.test_fraction, fraction_given=changed(cfg, "test_fraction"))
