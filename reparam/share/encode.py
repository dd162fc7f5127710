"""Posterior encodings of a data set: what ``reparam encode`` writes.

For x (N, *x_shape): ``point`` (N, D_L), the family's representative latent of q(z|x) (its
mean for most families; a relaxed bit's logit; ``Model.point``); ``mean`` and ``stddev``
(N, D), q's own mean and standard deviation where its distribution defines them; with
``draws`` K, ``draws`` (K, N, D), z as the model draws it. An ``.npy`` file holds one array
(``point``, or ``draws`` with --draws); an ``.npz`` holds them all, and ``labels`` (N,) where
the data carry labels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DataError, OutputError

CHUNK = 1024  # examples per encoder call
SUFFIXES = (".npy", ".npz")


def check_out(path: Path, draws: int) -> None:
    """OutputError (one line) for an --out that is neither .npy nor .npz."""
    if path.suffix not in SUFFIXES:
        raise OutputError(f"--out {path} must end in .npy (one array: the points, or the draws with --draws) or .npz (every array)")
    if draws < 0:
        raise OutputError(f"--draws must be >= 0, got {draws}")


def _moment(q, name: str) -> torch.Tensor | None:
    """q.mean or q.stddev, or None where q's distribution does not define it."""
    try:
        return getattr(q, name)
    except NotImplementedError:
        return None


def encode(model, x: torch.Tensor, y: torch.Tensor | None, draws: int, progress: bool | None = None) -> dict[str, np.ndarray]:
    """Arrays of x's posteriors (see the module docstring), chunk by chunk under ``torch.no_grad``."""
    parts: dict[str, list[torch.Tensor]] = {}
    bar = tqdm(total=len(x), disable=None if progress is None else not progress, unit="example", desc="encode", leave=False, dynamic_ncols=True)
    with torch.no_grad(), bar:
        for start in range(0, len(x), CHUNK):
            view = model if y is None else model.given(y[start : start + CHUNK])
            q = view.posterior(x[start : start + CHUNK])
            got = {"point": view.point(q), "mean": _moment(q, "mean"), "stddev": _moment(q, "stddev")}
            if draws:
                got["draws"] = q.sample((draws,))  # (K, B, D)
            for key, value in got.items():
                if value is not None:
                    parts.setdefault(key, []).append(value.float())
            bar.update(len(x[start : start + CHUNK]))
    out = {k: torch.cat(v, dim=1 if k == "draws" else 0).numpy() for k, v in parts.items()}
    if y is not None:
        out["labels"] = y.numpy()
    return out


def payload(arrays: dict[str, np.ndarray], suffix: str) -> bytes:
    """The file's bytes: an .npz of every array, or an .npy of the draws (when drawn) or the points."""
    buf = io.BytesIO()
    if suffix == ".npz":
        np.savez(buf, **arrays)  # type: ignore[arg-type]
    else:
        np.save(buf, arrays["draws"] if "draws" in arrays else arrays["point"], allow_pickle=False)
    return buf.getvalue()


def read_images(path: Path, x_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images (N, *x_shape) in [0, 1] from an .npy, or an .npz holding x (and y), in the file's order,
    through the data loaders' own checks; DataError (one line) otherwise."""
    from ..data.images import _read_arrays, labels_of, to_unit

    if not path.is_file():
        raise DataError(f"{path} is not a file; name test, train or an .npy/.npz file of images")
    arrays = _read_arrays(path)
    if len(arrays) == 1:
        arrays = {"x": next(iter(arrays.values()))}
    if "x" not in arrays or set(arrays) - {"x", "y"}:
        raise DataError(f"{path} holds arrays {sorted(arrays)}; expected one array of images, or x (and y)")
    x = to_unit(arrays["x"], f"{path}:x" if "y" in arrays else str(path))
    if tuple(x.shape[1:]) != tuple(x_shape):
        raise DataError(f"{path} holds images of shape {tuple(x.shape[1:])}; the run was trained on {tuple(x_shape)}")
    return x, labels_of(arrays["y"], len(x), f"{path}:y") if "y" in arrays else None
