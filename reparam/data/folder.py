"""``folder``: every PNG/JPEG image under ``data.path`` (all of one size), split at random like a
single array; one subfolder per class gives labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import Data, Source, needs_path, register
from .images import compact, split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _read_image(path: Path) -> np.ndarray:
    """One image as uint8 (H, W) for grey or (H, W, 3) for anything else (alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return pixels(im, str(path))
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def pixels(im, what: str) -> np.ndarray:
    """A PIL image as uint8 (H, W) for grey or (H, W, 3) for anything else (alpha dropped)."""
    try:
        return np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16", "I") else "RGB"))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read image {what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def load_folder(folder: Path, test_fraction: float, seed: int = 0) -> Data:
    """Every PNG/JPEG under ``folder`` (sorted, recursively) as one (N, H, W[, C]) array.

    All images must share one shape; grey images in a colour folder are promoted to RGB.
    When every image sits in a subfolder of ``folder`` and there are two or more, each
    subfolder is a class: its name is the class name and the labels follow (sorted names).
    """
    if not folder.is_dir():
        raise DataError(f"data.path {folder} is not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{folder} holds no .png, .jpg or .jpeg images")
    images = [_read_image(p) for p in files]
    if any(im.ndim == 3 for im in images):
        images = [np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im for im in images]
    for p, im in zip(files, images):
        if im.shape != images[0].shape:
            raise DataError(f"images in {folder} differ in shape: {files[0].name} is {images[0].shape}, {p.name} is {im.shape}; resize them to one size")
    x = compact(np.stack(images), str(folder))
    groups = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else None for p in files]
    names = [g for g in groups if g is not None]  # every image's subfolder, if each sits in one
    classes = sorted(set(names)) if len(names) == len(groups) and len(set(names)) > 1 else None
    if classes is None:
        return split(x, test_fraction, seed, str(folder), folder.name)
    y = torch.tensor([classes.index(g) for g in names])
    return split(x, test_fraction, seed, str(folder), folder.name, y, classes)


@register("folder")
class Folder(Source):
    """A folder of images; ``data.name=auto`` picks it for any folder that holds no ``mnist.npz``."""

    precedence = 30
    splits = True

    def claims(self, path: str) -> bool:
        return Path(path).expanduser().is_dir()

    def check(self, cfg) -> None:
        needs_path(cfg, "DIR (PNG/JPEG images)")

    def load(self, cfg, columns=None) -> Data:
        return load_folder(Path(cfg.path).expanduser(), cfg.test_fraction)
