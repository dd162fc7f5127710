"""A minimal PNG encoder (stdlib zlib): fast enough to answer every slider move."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import torch

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {3: 2, 4: 6}  # channels -> PNG colour type: truecolour, truecolour with alpha


def _chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def encode(image: np.ndarray | torch.Tensor) -> bytes:
    """(H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA values in [0, 1] -> PNG bytes (8 bits per channel)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    a = (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in COLOUR_TYPES):
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    h, w = a.shape[:2]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), a.reshape(h, -1)], axis=1)  # filter byte 0 per row
    header = struct.pack(">IIBBBBB", w, h, 8, 0 if a.ndim == 2 else COLOUR_TYPES[a.shape[2]], 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b"")
