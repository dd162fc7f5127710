"""Data sources, held in memory as float tensors in [0, 1].

``digits``: scikit-learn's bundled 8x8 digits (no download), a fixed train/test split.
``mnist``: an ``.npz`` in the Keras layout (x_train, y_train, x_test, y_test), found via
``data.path`` (a file or a folder) or the ``REPARAM_DATA`` folder; with
``data.download=true`` it is fetched once from ``data.url`` and checked against
``data.sha256``. ``file``: any ``.npz`` (Keras layout, or a single array) or ``.npy``
array of images with values in [0, 1] or 0..255. ``folder``: every PNG/JPEG image under
``data.path`` (all of one size), split at random like a single array.

``auto`` (the default): digits without ``data.path``; with one, the source the path names:
an ``.npz``/``.npy`` file is ``file``, a folder holding ``mnist.npz`` is ``mnist``, any other
folder is ``folder``. A key that has no effect on the chosen source (a path for digits, a
download for anything but MNIST, a test fraction for data that carry their own split) is
refused, never ignored.

Layout: grey images are (N, H, W), colour images (N, H, W, 3) or (N, H, W, 4) (channels
last, as numpy and PIL hold them). A trailing channel of size 1 is dropped; an array that
looks channels-first, (N, C, H, W) with C in {1, 3, 4}, is refused with the transpose to
apply; so are other ranks, empty axes, other channel counts, and complex values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, DataError, one_of, require
from .files import atomic_write_bytes

DIGITS_TEST = 297  # of 1797: the last 297 of a fixed permutation (seed 0)


@dataclass
class Data:
    """Images (N, *x_shape) in [0, 1] and optional integer labels (N,)."""

    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    name: str

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


CHANNELS = (3, 4)  # RGB, RGBA; grey images have no channel axis


def to_unit(images: np.ndarray, what: str) -> torch.Tensor:
    """uint8 0..255, floats in [0, 255] or booleans -> float32 tensor (N, *x_shape) in [0, 1].

    Refuses (DataError, one line) anything that is not real numbers laid out as grey
    (N, H, W) or colour (N, H, W, C) images, before any training starts.
    """
    images = channels_last(check_layout(images, what), what)
    x = images.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{what} holds NaN or infinite values; clean the array first")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 255:
        raise DataError(f"{what} holds values in [{lo:g}, {hi:g}]; expected [0, 1] or 0..255")
    if images.dtype == np.uint8 and hi == 1:  # 0s and 1s read as 0..255 would be black images
        raise DataError(f"{what} is uint8 holding only 0 and 1; for binary images save x.astype(bool) or x.astype(np.float32)")
    if images.dtype == np.uint8 or hi > 1.0:
        x /= 255.0
    return torch.from_numpy(np.ascontiguousarray(x))


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


def _labels(y) -> torch.Tensor | None:
    return None if y is None else torch.from_numpy(np.asarray(y).astype(np.int64))


def load_digits() -> Data:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy((bunch.images / 16.0).astype(np.float32))  # (1797, 8, 8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    tr, te = perm[:-DIGITS_TEST], perm[-DIGITS_TEST:]
    return Data(x[tr], x[te], y[tr], y[te], "digits")


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
    arrays = _read_arrays(path)
    if {"x_train", "x_test"} <= set(arrays):
        if fraction_given:
            raise DataError(f"{path} carries its own test split (x_test); data.test_fraction does not apply, drop it")
        train, test = to_unit(arrays["x_train"], f"{path}:x_train"), to_unit(arrays["x_test"], f"{path}:x_test")
        if train.shape[1:] != test.shape[1:]:
            raise DataError(f"{path}: x_train images are {tuple(train.shape[1:])}, x_test {tuple(test.shape[1:])}")
        return Data(train, test, _labels(arrays.get("y_train")), _labels(arrays.get("y_test")), path.stem)
    if len(arrays) != 1:
        raise DataError(f"{path} holds arrays {sorted(arrays)}; expected x_train and x_test, or a single array")
    return split(to_unit(next(iter(arrays.values())), str(path)), test_fraction, seed, str(path), path.stem)


def split(x: torch.Tensor, test_fraction: float, seed: int, what: str, name: str) -> Data:
    """Hold out a random ``test_fraction`` of x (N, *x_shape) (at least one image each side)."""
    if len(x) < 2:
        raise DataError(f"{what} holds {len(x)} image; need at least 2 to hold one out")
    n_test = min(len(x) - 1, max(1, round(len(x) * test_fraction)))
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    return Data(x[perm[:-n_test]], x[perm[-n_test:]], None, None, name)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _read_image(path: Path) -> np.ndarray:
    """One image as uint8 (H, W) for grey or (H, W, 3) for anything else (alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16", "I") else "RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def load_folder(folder: Path, test_fraction: float, seed: int = 0) -> Data:
    """Every PNG/JPEG under ``folder`` (sorted, recursively) as one (N, H, W[, C]) array.

    All images must share one shape; grey images in a colour folder are promoted to RGB.
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
    return split(to_unit(np.stack(images), str(folder)), test_fraction, seed, str(folder), folder.name)


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


SOURCES = {
    "digits": lambda cfg: load_digits(),
    "mnist": lambda cfg: load_arrays(mnist_path(cfg), cfg.test_fraction),
    "file": lambda cfg: load_arrays(Path(cfg.path).expanduser(), cfg.test_fraction, fraction_given=changed(cfg, "test_fraction")),
    "folder": lambda cfg: load_folder(Path(cfg.path).expanduser(), cfg.test_fraction),
}
ARRAY_SUFFIXES = (".npz", ".npy")


BINARIZATIONS = ("none", "static", "dynamic")


def changed(cfg, key: str) -> bool:
    """Whether the ``data`` section's ``key`` differs from its default (the user set it)."""
    return getattr(cfg, key) != {f.name: f.default for f in dataclasses.fields(cfg)}[key]


def infer_source(cfg) -> str:
    """``data.name``, with ``auto`` resolved: digits without a path, else what the path is."""
    if cfg.name != "auto":
        return cfg.name
    if not cfg.path:
        return "digits"
    path = Path(cfg.path).expanduser()
    if path.is_dir():
        return "mnist" if (path / "mnist.npz").is_file() else "folder"
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return "file"
    require(path.exists(), f"data.path {path} does not exist")
    raise ConfigError(f"data.path {path} is neither an .npz/.npy file nor a folder of images; set data.name (one of {', '.join(SOURCES)})")


def check(cfg) -> None:
    """The ``data`` config section's rules (ConfigError, one line naming the key); ``auto`` resolved first."""
    one_of("data.name", cfg.name, ("auto", *SOURCES))
    cfg.name = infer_source(cfg)
    one_of("data.binarize", cfg.binarize, BINARIZATIONS)
    require(0.0 < cfg.test_fraction < 1.0, f"data.test_fraction must lie in (0, 1), got {cfg.test_fraction}")
    require(cfg.name != "file" or bool(cfg.path), "data.name=file needs data.path=FILE")
    require(cfg.name != "folder" or bool(cfg.path), "data.name=folder needs data.path=DIR (PNG/JPEG images)")
    require(cfg.name != "digits" or not cfg.path, "data.path has no effect on the bundled digits; drop it, or name its source (data.name=file, folder or mnist)")
    require(cfg.name == "mnist" or not cfg.download, f"data.download applies to data.name=mnist only, not {cfg.name}; drop it")
    fetched = cfg.name == "mnist" and cfg.download
    require(fetched or not (changed(cfg, "url") or changed(cfg, "sha256")), "data.url and data.sha256 apply only with data.name=mnist data.download=true")
    require(
        cfg.name in ("file", "folder") or not changed(cfg, "test_fraction"),
        f"data.test_fraction applies to arrays without a test split (data.name=file or folder); {cfg.name} keeps its own, drop it",
    )


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli draw of every grey level: pixel ~ Bernoulli(x)."""
    return torch.bernoulli(x, generator=generator)


TEST_BINARIZATION_SEED = 12345


def load(cfg) -> Data:
    """Load the configured source and apply static binarization.

    With ``binarize=dynamic`` the training images stay grey (the trainer draws a new
    binarization every time an image is used) while the test set is binarized once
    with a fixed seed (not the run's), so held-out numbers are comparable across runs.
    """
    data = SOURCES[infer_source(cfg)](cfg)
    if cfg.binarize != "none":
        g = torch.Generator().manual_seed(TEST_BINARIZATION_SEED)
        data.test = binarize(data.test, g)
        if cfg.binarize == "static":
            data.train = binarize(data.train, g)
    return data
