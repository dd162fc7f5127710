"""Image grids written as PNG files (atomically)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write_bytes


def tile(images: torch.Tensor | np.ndarray, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) values in [0, 1] -> one (rows*H', cols*W'[, C]) mosaic."""
    x = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images, dtype=np.float32)
    n, h, w = x.shape[:3]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    out = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, *x.shape[3:]), np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = x[i]
    return np.clip(out, 0.0, 1.0)


def save_png(path: str | Path, mosaic: np.ndarray, scale: int = 1) -> Path:
    """Write a mosaic as PNG, each pixel repeated ``scale`` times in both directions."""
    from matplotlib.image import imsave

    big = mosaic.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    imsave(buf, big, cmap="gray" if big.ndim == 2 else None, vmin=0.0, vmax=1.0, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def upscale_for(x_shape: tuple[int, ...], target: int = 28 * 3) -> int:
    """An integer upscaling that makes one image about ``target`` pixels tall."""
    return max(1, target // x_shape[0])
