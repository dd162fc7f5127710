"""``python``: images handed to ``reparam.train.train(cfg, out, data=...)`` in Python: tensors,
numpy arrays or a ``torch.utils.data.Dataset``, under the same layout rules and checks as a file.

What ``data=`` takes (``given``):

- one set of images, (N, H, W) or (N, H, W, C), a tensor, an array or a Dataset: split at
  random by ``data.test_fraction`` (seed 0, as a single array in a file);
- a pair ``(train, test)`` of those;
- a dict of arrays laid out as an .npz file: ``x_train``, ``x_test`` (and ``y_train``, ``y_test``),
  or ``x`` and ``y``.

A Dataset's items are an image, or a tuple whose first two entries are the image and its
integer label. The run records ``data.name=python`` and nothing of the images: ``reparam eval``,
``report``, ``explore`` and ``--resume`` on it say in one line that the images were given in
Python (``reparam sample`` needs none). Evaluate such a run in Python,
``reparam.evaluate.evaluate(reparam.load(RUN), x_test, k)``, and continue it with
``reparam.train.resume(RUN, data=...)``, the same images again.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..errors import ConfigError, DataError, require
from .base import Data, Source, changed, prepare, register
from .images import compact, from_arrays, labels_of, split, two_splits

WHAT = "data="


@register("python")
class Python(Source):
    """Images given in Python; chosen by ``reparam.train.train(..., data=...)``, never by a path."""

    splits = True

    def check(self, cfg) -> None:
        require(not cfg.path, "data.name=python takes its images from reparam.train.train(cfg, out, data=...), not data.path; drop it")

    def load(self, cfg, columns=None) -> Data:
        raise DataError(
            "this run's images were given in Python (reparam.train.train(cfg, out, data=...)) and are not saved with it; "
            "pass them again in Python (reparam.train.resume(RUN, data=...)), or evaluate there: reparam.evaluate.evaluate(reparam.load(RUN), x_test, k)"
        )


def choose(cfg) -> None:
    """Make a config's data section take ``data=`` (``data.name=python``): refused (one line) when it names other data."""
    if cfg.name not in ("python", "digits") or cfg.path:
        raise ConfigError(f"data= gives the images, and the config names data.name={cfg.name}{f' data.path={cfg.path}' if cfg.path else ''}; drop those keys (or set data.name=python)")
    if cfg.name == "digits" and changed(cfg, "test_fraction"):  # refused by the digits' rules before: say which key to set
        raise ConfigError("data.test_fraction with data= needs data.name=python in the config")
    cfg.name = "python"


def given(obj, cfg) -> Data:
    """``data=`` (see the module's docstring) as ``Data``, checked and held like a file's images,
    with the data section's binarization applied (``base.prepare``)."""
    fraction_given = changed(cfg, "test_fraction")
    if isinstance(obj, Mapping):
        data = from_arrays({str(k): _numpy(v, f"{WHAT}[{k!r}]") for k, v in obj.items()}, WHAT, "python", cfg.test_fraction, 0, fraction_given)
    elif isinstance(obj, tuple) and len(obj) == 2:
        if fraction_given:
            raise DataError("data=(train, test) carries its own test split; data.test_fraction does not apply, drop it")
        (train, y_train), (test, y_test) = _images(obj[0], f"{WHAT}[0]"), _images(obj[1], f"{WHAT}[1]")
        data = two_splits(train, test, y_train, y_test, WHAT, "python")
    else:
        x, y = _images(obj, WHAT)
        data = split(x, cfg.test_fraction, 0, WHAT, "python", y)
    return prepare(data, cfg)


def _numpy(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise DataError(f"{what} is a {type(x).__name__}; give a tensor, a numpy array or a torch.utils.data.Dataset")


def _images(obj, what: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images as held (``compact``) and their labels, if a Dataset's items carry them."""
    if not isinstance(obj, torch.utils.data.Dataset):
        return compact(_numpy(obj, what), what), None
    n = len(obj)  # type: ignore[arg-type]
    if n == 0:
        raise DataError(f"{what} is an empty Dataset")
    items = [obj[i] for i in range(n)]
    if not isinstance(items[0], (tuple, list)):
        return compact(np.stack([_numpy(x, f"{what}[{i}]") for i, x in enumerate(items)]), what), None
    x = compact(np.stack([_numpy(item[0], f"{what}[{i}][0]") for i, item in enumerate(items)]), what)
    labels = np.array([y.item() if isinstance(y, torch.Tensor) else y for _, y, *_ in items])
    return x, labels_of(labels, n, f"{what}'s labels")
