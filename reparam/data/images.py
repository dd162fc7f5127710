"""Arrays of images in [0, 1]: files of arrays (``file`` and ``mnist`` read them), their layout,
their labels, the random split of data without a test split, and how images are held in memory.

Storage: 8-bit images (uint8 arrays, integers 0..255, PNG/JPEG) are held as uint8 grey levels k
standing for k / 255, binary images as booleans, anything else as float32 in [0, 1]; ``unit``
turns any of them into float32 in [0, 1], per batch, with the very floats the conversion at
load gave before (the correctly rounded k / 255): a quarter of the memory for the training set.

Layout: grey images are (N, H, W), colour images (N, H, W, 3) or (N, H, W, 4) (channels
last, as numpy and PIL hold them). A trailing channel of size 1 is dropped; an array that
looks channels-first, (N, C, H, W) with C in {1, 3, 4}, is refused with the transpose to
apply; so are other ranks, empty axes, other channel counts, and complex values.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import Data

CHANNELS = (3, 4)  # RGB, RGBA; grey images have no channel axis


def to_unit(images: np.ndarray, what: str) -> torch.Tensor:
    """uint8 0..255, floats in [0, 255] or booleans -> float32 tensor (N, *x_shape) in [0, 1].

    Refuses (DataError, one line) anything that is not real numbers laid out as grey
    (N, H, W) or colour (N, H, W, C) images, before any training starts.
    """
    images = channels_last(check_layout(images, what), what)
    if images.dtype == np.uint8:  # always finite, 0..255: torch's threaded cast, the same floats as numpy's, ~9x faster
        if images.max() == 1:  # 0s and 1s read as 0..255 would be black images
            raise DataError(f"{what} is uint8 holding only 0 and 1; for binary images save x.astype(bool) or x.astype(np.float32)")
        return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = images.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{what} holds NaN or infinite values; clean the array first")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 255:
        raise DataError(f"{what} holds values in [{lo:g}, {hi:g}]; expected [0, 1] or 0..255")
    if hi > 1.0:
        x /= 255.0
    return torch.from_numpy(np.ascontiguousarray(x))


def compact(images: np.ndarray, what: str) -> torch.Tensor:
    """``to_unit``'s checks, the images held small: uint8 levels (N, *x_shape) for 8-bit images
    (uint8, or integers within 0..255 above 0..1), booleans for binary ones, float32 in [0, 1]
    otherwise; ``unit`` of the result equals ``to_unit(images)``."""
    images = channels_last(check_layout(images, what), what)
    integer = np.issubdtype(images.dtype, np.integer) and images.dtype != np.uint8
    if integer and images.size and 1 < int(images.max()) <= 255 and int(images.min()) >= 0:
        images = images.astype(np.uint8)
    if images.dtype == np.uint8:
        if images.max() == 1:  # to_unit's refusal, worded once there
            return to_unit(images, what)
        return torch.from_numpy(np.ascontiguousarray(images))
    if images.dtype == np.bool_:
        return torch.from_numpy(np.ascontiguousarray(images))
    return to_unit(images, what)


def check_layout(images: np.ndarray, what: str) -> np.ndarray:
    """The array's dtype (real numbers or booleans) and rank (3 or 4, no empty axis)."""
    if np.iscomplexobj(images):
        raise DataError(f"{what} holds complex values; reparam takes real images (save np.abs(x) or x.real if that is what you mean)")
    if images.dtype != np.bool_ and (images.dtype == object or not np.issubdtype(images.dtype, np.number)):
        raise DataError(f"{what} holds {images.dtype} values, not numbers")
    if images.ndim == 2:
        raise DataError(f"{what} has shape {images.shape}: one vector per row, not images; save it as (N, H, W), e.g. x.reshape(len(x), H, W)")
    if images.ndim not in (3, 4) or 0 in images.shape:
        raise DataError(f"{what} has shape {images.shape}; expected (N, H, W) grey or (N, H, W, C) colour images with N >= 1 and no empty axis")
    return images


def channels_last(images: np.ndarray, what: str) -> np.ndarray:
    """(N, H, W, 1) -> (N, H, W); refuse (N, C, H, W) with a hint, and channel counts other than 3 or 4."""
    if images.ndim != 4:
        return images
    if images.shape[1] in (1, 3, 4) and images.shape[3] not in (1, 3, 4):
        raise DataError(
            f"{what} has shape {images.shape}, which looks channels-first; reparam stores images "
            "(N, H, W, C): save np.moveaxis(x, 1, -1)"
        )
    if images.shape[3] == 1:
        return images[..., 0]
    if images.shape[3] not in CHANNELS:
        raise DataError(f"{what} has {images.shape[3]} channels per pixel; expected grey (N, H, W), RGB (N, H, W, 3) or RGBA (N, H, W, 4)")
    return images


def labels_of(y: np.ndarray, n: int, what: str) -> torch.Tensor:
    """Integer class labels 0..C-1 for n images; DataError (one line) for anything else."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"{what} has shape {y.shape}; expected one label per image, ({n},)")
    if not np.issubdtype(y.dtype, np.integer) and not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
        raise DataError(f"{what} holds {y.dtype} values; labels must be integers 0..C-1")
    if y.min() < 0:
        raise DataError(f"{what} holds the label {int(y.min())}; labels must be integers 0..C-1")
    return torch.from_numpy(y.astype(np.int64))


def class_names(y: torch.Tensor) -> list[str]:
    """Names of classes 0..max(y): their numbers."""
    return [str(c) for c in range(int(y.max()) + 1)]


def split_rows(n: int, test_fraction: float, seed: int, what: str, unit: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: a random ``test_fraction`` of n held out, at least one each side."""
    if n < 2:
        raise DataError(f"{what} holds {n} {unit}; need at least 2 to hold one out")
    n_test = min(n - 1, max(1, round(n * test_fraction)))
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:-n_test], perm[-n_test:]


def split(x: torch.Tensor, test_fraction: float, seed: int, what: str, name: str, y: torch.Tensor | None = None,
          classes: list[str] | None = None) -> Data:  # fmt: skip
    """Hold out a random ``test_fraction`` of x (N, *x_shape) and its labels y (N,) (at least one image each side)."""
    train, test = (torch.from_numpy(i) for i in split_rows(len(x), test_fraction, seed, what))
    if y is None:
        return Data(x[train], x[test], None, None, name)
    return Data(x[train], x[test], y[train], y[test], name, classes or class_names(y))


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"x": loaded}
        with loaded as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read {path}: {reason}") from None


def load_arrays(path: Path, test_fraction: float, seed: int = 0, fraction_given: bool = False) -> Data:
    """A Keras-layout .npz, or one array (.npy, or a single-array .npz) split at random.

    ``fraction_given``: the user set ``data.test_fraction``, which a file that carries its
    own test split (x_train, x_test) refuses rather than ignores.
    """
    if path.is_dir():
        raise DataError(f"data.path {path} is a folder; data.name=file takes an .npz or .npy file (data.name=folder reads a folder of images)")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    return from_arrays(_read_arrays(path), str(path), path.stem, test_fraction, seed, fraction_given)


def from_arrays(arrays: dict[str, np.ndarray], where: str, name: str, test_fraction: float, seed: int = 0, fraction_given: bool = False) -> Data:
    """Named arrays as an .npz holds them (``where`` names them in errors): x_train and x_test
    (and y_train, y_test), x and y split at random, or a single array split at random."""
    if {"x_train", "x_test"} <= set(arrays):
        if fraction_given:
            raise DataError(f"{where} carries its own test split (x_test); data.test_fraction does not apply, drop it")
        return _keras(arrays, where, name)
    if set(arrays) == {"x", "y"}:  # one array of images and its labels, split at random
        x = compact(arrays["x"], f"{where}:x")
        return split(x, test_fraction, seed, where, name, labels_of(arrays["y"], len(x), f"{where}:y"))
    if len(arrays) != 1:
        raise DataError(f"{where} holds arrays {sorted(arrays)}; expected x_train and x_test (and y_train, y_test), x and y, or a single array")
    return split(compact(next(iter(arrays.values())), where), test_fraction, seed, where, name)


def _keras(arrays: dict[str, np.ndarray], where: str, name: str) -> Data:
    """x_train, x_test and optionally y_train, y_test: the file's own split."""
    train, test = compact(arrays["x_train"], f"{where}:x_train"), compact(arrays["x_test"], f"{where}:x_test")
    y_train = y_test = None
    if ("y_train" in arrays) != ("y_test" in arrays):
        raise DataError(f"{where} has labels for one split only; save both y_train and y_test, or neither")
    if "y_train" in arrays:
        y_train, y_test = labels_of(arrays["y_train"], len(train), f"{where}:y_train"), labels_of(arrays["y_test"], len(test), f"{where}:y_test")
    return two_splits(train, test, y_train, y_test, where, name)


def two_splits(train: torch.Tensor, test: torch.Tensor, y_train: torch.Tensor | None, y_test: torch.Tensor | None, where: str, name: str,
               classes: list[str] | None = None) -> Data:  # fmt: skip
    """Data of a given training and test split: images of one shape, labels for both or neither."""
    if train.shape[1:] != test.shape[1:]:
        raise DataError(f"{where}: the training images are {tuple(train.shape[1:])}, the test images {tuple(test.shape[1:])}; use images of one size")
    if (y_train is None) != (y_test is None):
        raise DataError(f"{where} has labels for one split only; give both splits labels, or neither")
    if y_train is None or y_test is None:
        return Data(train, test, None, None, name)
    return Data(train, test, y_train, y_test, name, classes or class_names(torch.cat([y_train, y_test])))
