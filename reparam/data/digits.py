"""``digits``: scikit-learn's bundled 8x8 digits (no download), a fixed train/test split."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import require
from .base import Data, Source, register

DIGITS_TEST = 297  # of 1797: the last 297 of a fixed permutation (seed 0)


def load_digits() -> Data:
    """1500 training and 297 test images (8, 8) in [0, 1] (grey levels 0..16 / 16), labels 0..9."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy((bunch.images / 16.0).astype(np.float32))  # (1797, 8, 8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    tr, te = perm[:-DIGITS_TEST], perm[-DIGITS_TEST:]
    return Data(x[tr], x[te], y[tr], y[te], "digits", [str(c) for c in range(10)])


@register("digits")
class Digits(Source):
    """The default: what ``data.name=auto`` reads when no ``data.path`` is given."""

    precedence = 0

    def claims(self, path: str) -> bool:
        return not path

    def check(self, cfg) -> None:
        require(not cfg.path, "data.path has no effect on the bundled digits; drop it, or name its source (data.name=file, folder, mnist or table)")

    def load(self, cfg, columns=None) -> Data:
        return load_digits()
