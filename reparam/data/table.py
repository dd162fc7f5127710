"""``table``: a CSV, Parquet, (N, F) ``.npy``/``.npz`` file, a folder saved by Hugging Face
``datasets`` (``hf.table_columns``) or a table bundled with scikit-learn (``sklearn:wine``),
``data.columns`` of it (all by default), its columns typed and coded by ``reparam.tables`` (rows (N, F'), not
images; the training rows' statistics standardize the real columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import tables
from ..errors import DataError, require
from .base import Data, Source, changed, needs_path, register
from .images import split_rows

MAX_LEVELS = 50  # data.max_levels: more levels than this in a text column is an identifier or free text
OWN_KEYS = ("categorical", "max_levels", "columns")


def is_table_path(path: str) -> bool:
    """Whether ``data.path`` names a table by its form alone: a .csv/.parquet file or a bundled sklearn: table
    (an (N, F) .npy table needs data.name=table: an .npy is read as images otherwise)."""
    return path.startswith("sklearn:") or Path(path).suffix.lower() in (".csv", ".parquet", ".pq")


def load_table(cfg, columns: tables.Columns | None = None, seed: int = 0) -> Data:
    """A table (``data.path``): rows split at random like a single array, every column typed and
    coded (``reparam.tables``). ``columns`` (a run's saved ones) codes the rows as that run did,
    refusing a table that does not fit them; otherwise they are inferred, statistics from the
    training rows."""
    from .hf import is_saved, table_columns  # here: the sources register in the order messages list them

    raw = table_columns(cfg.path, list(cfg.columns)) if is_saved(cfg.path) else chosen(tables.read(cfg.path), list(cfg.columns), cfg.path)
    where = cfg.path
    train, test = split_rows(len(raw[0].values), cfg.test_fraction, seed, where, "row")
    if columns is None:
        columns = tables.infer(raw, np.sort(train), list(cfg.categorical), cfg.max_levels, where)
    x = torch.from_numpy(columns.encode(raw, where))
    name = cfg.path.partition(":")[2] if cfg.path.startswith("sklearn:") else Path(cfg.path).stem
    return Data(x[torch.from_numpy(train)], x[torch.from_numpy(test)], None, None, name, columns=columns)


def chosen(raw: list[tables.RawColumn], keep: list[str], where: str) -> list[tables.RawColumn]:
    """The columns named in ``keep`` (``data.columns``; all when empty), in that order."""
    names = [c.name for c in raw]
    missing = next((k for k in keep if k not in names), None)
    if missing is not None:
        raise DataError(f"{where} has no column {missing!r} (data.columns); its columns: {', '.join(names)}")
    return [raw[names.index(k)] for k in keep] if keep else raw


@register("table")
class Table(Source):
    """Rows of a table; ``data.name=auto`` picks it for a path that names a table by its form
    (``is_table_path``), before looking at the file system. Its own keys: ``categorical``,
    ``max_levels``."""

    precedence = 10
    splits = True

    def claims(self, path: str) -> bool:
        return is_table_path(path)

    def check(self, cfg) -> None:
        needs_path(cfg, "FILE (.csv, .parquet, .npy) or a bundled table such as sklearn:wine")
        require(cfg.binarize == "none", f"data.name=table takes data.binarize=none (its columns are not grey levels); got {cfg.binarize!r}")

    def check_unused(self, cfg) -> None:
        for key in OWN_KEYS:
            require(not changed(cfg, key), f"data.{key} applies to data.name=table; remove it or set data.name=table")

    def load(self, cfg, columns: tables.Columns | None = None) -> Data:
        return load_table(cfg, columns)
