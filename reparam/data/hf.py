"""``hf``: a Hugging Face ``datasets`` dataset (``pip install 'reparam[hf]'``): a folder saved by
``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, a local dataset folder (data files that
``datasets.load_dataset`` reads), or a name on the Hub where the network allows.

Images come from one column (``data.image_column``; by default the one column of ``Image``
features): PIL images (grey stays grey, anything else RGB, as in an image folder) or arrays
of numbers, under the layout rules of ``images.py``. Labels come from ``data.label_column``
(by default a column named ``label``, where there is one; a ``ClassLabel`` names the classes).
A dataset with splits trains on ``data.train_split`` and holds out ``data.test_split``
(``train`` and ``test``); ``data.test_split=""``, or a dataset of one split, holds out
``data.test_fraction`` of the training rows at random. A saved dataset of numbers and text
is also a table: ``data.name=table data.path=DIR`` (``table_columns``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, require
from ..tables.read import RawColumn, column, numeric
from .base import Data, Source, changed, needs_path, register
from .folder import pixels
from .images import compact, labels_of, split, two_splits

HF_EXTRA = "pip install 'reparam[hf]'"
OWN_KEYS = ("image_column", "label_column", "train_split", "test_split")
SAVED = ("dataset_dict.json", "state.json")  # what save_to_disk leaves in its folder


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError(f"data.name=hf reads Hugging Face datasets with the datasets package: {HF_EXTRA}") from None
    return datasets


def is_saved(path: str) -> bool:
    """Whether ``path`` is a folder written by ``save_to_disk`` (a Dataset or a DatasetDict)."""
    p = Path(path).expanduser()
    return bool(path) and any((p / name).is_file() for name in SAVED)


def open_dataset(path: str):
    """The dataset at ``path`` (a saved folder, a local dataset folder, or a Hub name): a
    ``datasets.Dataset`` or ``DatasetDict``; DataError (one line) when it cannot be read."""
    datasets = _datasets()
    local = Path(path).expanduser()
    try:
        if is_saved(path):
            return datasets.load_from_disk(str(local))
        return datasets.load_dataset(str(local) if local.exists() else path)
    except Exception as e:  # the library's own errors (network, formats, missing files): said in one line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot load the dataset {path}: {reason}") from None


def _splits(dataset, cfg) -> tuple[Any, Any]:
    """(training split, test split or None) of a Dataset or DatasetDict, as the data section names them."""
    if not hasattr(dataset, "keys"):  # one Dataset
        for key in ("train_split", "test_split"):
            require(not changed(cfg, key), f"data.{key} names a split, and {cfg.path} is one dataset without splits; drop it")
        return dataset, None
    names = list(dataset.keys())
    if cfg.train_split not in names:
        raise DataError(f"{cfg.path} has no split {cfg.train_split!r}; its splits: {', '.join(names)} (set data.train_split)")
    if not cfg.test_split:
        return dataset[cfg.train_split], None
    if cfg.test_split not in names:
        raise DataError(f"{cfg.path} has no split {cfg.test_split!r}; its splits: {', '.join(names)} (set data.test_split, or data.test_split='' to hold out data.test_fraction)")
    require(not changed(cfg, "test_fraction"), f"{cfg.path} has a test split ({cfg.test_split}); data.test_fraction does not apply, drop it (or set data.test_split='')")
    return dataset[cfg.train_split], dataset[cfg.test_split]


def _column(split, key: str, name: str, where: str) -> str:
    if name not in split.column_names:
        raise DataError(f"{where} has no column {name!r} (data.{key}); its columns: {', '.join(split.column_names)}")
    return name


def _image_column(split, cfg, where: str) -> str:
    if cfg.image_column:
        return _column(split, "image_column", cfg.image_column, where)
    image = _datasets().Image
    found = [name for name, feature in split.features.items() if isinstance(feature, image)]
    if len(found) != 1:
        raise DataError(f"{where} has {len(found) or 'no'} columns of images; set data.image_column to one of its columns: {', '.join(split.column_names)}")
    return found[0]


def _images(split, column: str, where: str):
    """(N, H, W[, C]) images as held (``compact``): PIL images read as an image folder reads them, arrays as they are."""
    what = f"{where}:{column}"
    if isinstance(split.features[column], _datasets().Image):
        shots = [pixels(im, f"{what}[{i}]") for i, im in enumerate(split[column])]
        if any(s.ndim == 3 for s in shots):
            shots = [np.repeat(s[..., None], 3, -1) if s.ndim == 2 else s for s in shots]
        odd = next((i for i, s in enumerate(shots) if s.shape != shots[0].shape), None)
        if odd is not None:
            raise DataError(f"images in {what} differ in shape: row 0 is {shots[0].shape}, row {odd} is {shots[odd].shape}; resize them to one size")
        return compact(np.stack(shots), what)
    try:
        array = np.asarray(split.select_columns([column]).with_format("numpy")[:][column])
    except (ValueError, TypeError) as e:
        raise DataError(f"cannot read {what} as an array of images: {str(e).splitlines()[0]}") from None
    return compact(array, what)


def _labels(split, column: str, n: int, where: str):
    values = np.asarray(split.select_columns([column]).with_format("numpy")[:][column])
    return labels_of(values, n, f"{where}:{column}")


def load_hf(cfg) -> Data:
    """The images (and labels) of the dataset at ``data.path`` (see the module's docstring)."""
    dataset = open_dataset(cfg.path)
    train, test = _splits(dataset, cfg)
    where, name = cfg.path, Path(cfg.path).name or cfg.path
    column = _image_column(train, cfg, where)
    label = cfg.label_column or ("label" if "label" in train.column_names else "")
    x = _images(train, column, where)
    y = _labels(train, _column(train, "label_column", label, where), len(x), where) if label else None
    feature = train.features.get(label) if label else None
    classes = list(feature.names) if isinstance(feature, _datasets().ClassLabel) else None
    if test is None:
        return split(x, cfg.test_fraction, 0, where, name, y, classes)
    x_test = _images(test, _column(test, "image_column", column, f"{where}[{cfg.test_split}]"), where)
    y_test = _labels(test, _column(test, "label_column", label, f"{where}[{cfg.test_split}]"), len(x_test), where) if label else None
    return two_splits(x, x_test, y, y_test, where, name, classes)


def table_columns(path: str, keep: list[str]) -> list[RawColumn]:
    """A saved dataset's rows as a table's columns (a DatasetDict's splits one after another), those
    named in ``keep`` (all if empty): numbers or text (``tables.read``'s rules: no missing cell, finite numbers)."""
    dataset = open_dataset(path)
    parts = [dataset[k] for k in dataset.keys()] if hasattr(dataset, "keys") else [dataset]
    features = parts[0].features
    for name in keep:
        _column(parts[0], "columns", name, path)
    out = []
    for name, feature in ((n, features[n]) for n in keep or list(features)):
        kind = getattr(feature, "dtype", "")
        cells = [v for part in parts for v in part[name]]
        if kind.startswith(("int", "uint", "float")):
            out.append(numeric(name, np.array([np.nan if v is None else v for v in cells], dtype=np.float64), path))
        elif kind in ("string", "large_string", "bool"):
            out.append(column(name, ["" if v is None else str(v) for v in cells], path))
        else:
            raise DataError(f"{path}: column {name!r} holds {type(feature).__name__} values, not numbers or text; choose the table's columns with data.columns")
    if not out or not len(out[0].values):
        raise DataError(f"{path} holds no rows; a table needs at least two")
    return out


@register("hf")
class Hf(Source):
    """A Hugging Face dataset; ``data.name=auto`` picks it for a folder saved by ``save_to_disk``.
    Its own keys: ``image_column``, ``label_column``, ``train_split``, ``test_split``."""

    precedence = 15
    splits = True

    def claims(self, path: str) -> bool:
        return is_saved(path)

    def check(self, cfg) -> None:
        needs_path(cfg, "DIR (a saved dataset or a dataset folder) or a name on the Hub")

    def check_unused(self, cfg) -> None:
        for key in OWN_KEYS:
            require(not changed(cfg, key), f"data.{key} applies to data.name=hf; remove it or set data.name=hf")

    def load(self, cfg, columns=None) -> Data:
        return load_hf(cfg)
