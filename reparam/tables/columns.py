"""Column types, inferred once from a table and saved with the run (RUN/columns.json).

How a column's type is inferred:

- **binary**: exactly two distinct values (numbers or text), coded 0 and 1 in sorted order;
- **categorical**: text with three or more distinct values (at most ``max_levels``), or a
  numeric column named in ``data.categorical``; one-hot coded, levels in sorted order;
- **real**: numbers with three or more distinct values, standardized with the mean and
  standard deviation of the training rows: x_std = (x - mean) / std.

A column with a single value carries no information and is refused, as is a categorical
column with more than ``max_levels`` levels (an identifier or free text, most often).

A row becomes one vector of width F' = (real columns) + (binary columns) + (sum of the
categorical columns' levels), in the order of the table's columns. ``layout()`` is what the
``table`` likelihood head needs of it: ``"real"``, ``"binary"`` or ``"categorical:L"`` per column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from .read import RawColumn

KINDS = ("real", "binary", "categorical")


@dataclass
class Column:
    """One column: its name and kind; ``mean``/``std`` of a real column (original units);
    ``labels`` of a binary or categorical column, in code order (numbers or text)."""

    name: str
    kind: str
    mean: float = 0.0
    std: float = 1.0
    labels: list[Any] = field(default_factory=list)

    @property
    def width(self) -> int:
        return len(self.labels) if self.kind == "categorical" else 1

    @property
    def spec(self) -> str:
        return f"categorical:{len(self.labels)}" if self.kind == "categorical" else self.kind

    def to_json(self) -> dict:
        if self.kind == "real":
            return {"name": self.name, "kind": "real", "mean": self.mean, "std": self.std}
        return {"name": self.name, "kind": self.kind, "labels": self.labels}


def _sorted_levels(col: RawColumn) -> list[Any]:
    """Distinct values in sorted order: floats for a numeric column, strings otherwise."""
    return [float(v) for v in np.unique(col.values)] if col.numeric else sorted(set(col.values))


def infer_column(col: RawColumn, train_rows: np.ndarray, categorical: bool, max_levels: int, where: str) -> Column:
    """The kind of one column (see the module docstring); real statistics from ``train_rows``."""
    levels = _sorted_levels(col)
    if len(levels) == 1:
        raise DataError(f"{where}: column {col.name!r} holds one value only ({format_value(levels[0])}); drop it, it carries no information")
    if len(levels) == 2 and not categorical:
        return Column(col.name, "binary", labels=levels)
    if not col.numeric or categorical:
        if len(levels) > max_levels:
            raise DataError(
                f"{where}: column {col.name!r} has {len(levels)} distinct values, more than data.max_levels={max_levels}; "
                "drop an identifier or free-text column, or raise data.max_levels"
            )
        return Column(col.name, "categorical", labels=levels)
    train = np.asarray(col.values)[train_rows]
    std = float(train.std())
    if not std > 0:
        raise DataError(f"{where}: column {col.name!r} holds one value only in the training rows; drop it or hold out fewer rows")
    return Column(col.name, "real", mean=float(train.mean()), std=std)


@dataclass
class Columns:
    """The table's columns, in order: how a row is coded and decoded."""

    columns: list[Column]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def width(self) -> int:
        """F', the length of a coded row."""
        return sum(c.width for c in self.columns)

    def layout(self) -> list[str]:
        """One spec per column for the ``table`` likelihood head: real, binary or categorical:L."""
        return [c.spec for c in self.columns]

    def slices(self) -> list[slice]:
        """Where each column sits in a coded row (N, F')."""
        out, start = [], 0
        for c in self.columns:
            out.append(slice(start, start + c.width))
            start += c.width
        return out

    def log_scale(self) -> float:
        """sum_j log std_j over the real columns: the nats that turn a log-density of standardized
        rows into one of rows in original units, log p(x) = log p(x_std) - sum_j log std_j."""
        return sum(math.log(c.std) for c in self.columns if c.kind == "real")

    def to_json(self) -> dict:
        return {"columns": [c.to_json() for c in self.columns], "layout": self.layout()}

    @classmethod
    def from_json(cls, obj: dict, where: str) -> Columns:
        try:
            cols = [Column(c["name"], c["kind"], c.get("mean", 0.0), c.get("std", 1.0), list(c.get("labels", []))) for c in obj["columns"]]
        except (KeyError, TypeError):
            raise DataError(f"{where} is not a reparam column list; the run folder is damaged") from None
        if not cols or any(c.kind not in KINDS for c in cols):
            raise DataError(f"{where} is not a reparam column list; the run folder is damaged")
        return cls(cols)

    def encode(self, raw: list[RawColumn], where: str) -> np.ndarray:
        """Read columns -> coded rows (N, F') float32; DataError if they do not fit these columns."""
        self.check_names([c.name for c in raw], where)
        parts = [_encode(col, spec, where) for col, spec in zip(raw, self.columns)]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def check_names(self, names: list[str], where: str) -> None:
        if names != self.names:
            diff = next((i for i, (a, b) in enumerate(zip(names, self.names)) if a != b), min(len(names), len(self.names)))
            got = repr(names[diff]) if diff < len(names) else "nothing"
            want = repr(self.names[diff]) if diff < len(self.names) else "nothing"
            raise DataError(
                f"{where} does not match the run's columns: column {diff + 1} is {got}, the run was trained with {want} "
                "(RUN/columns.json); use the table the run was trained on"
            )

    def decode(self, x: np.ndarray) -> list[list[Any]]:
        """Coded rows (N, F') -> rows in original units: real columns x * std + mean (to 7
        significant digits, float32's precision), binary ones the label of x > 1/2,
        categorical ones the label of the largest entry."""
        cols = [_decode(x[:, s], c) for s, c in zip(self.slices(), self.columns)]
        return [list(row) for row in zip(*cols)]


def _encode(col: RawColumn, spec: Column, where: str) -> np.ndarray:
    """One read column -> its block of the coded rows (N, width)."""
    if spec.kind == "real":
        if not col.numeric:
            bad = next(v for v in col.values if not _is_number(v))
            raise DataError(f"{where}: column {col.name!r} holds {bad!r}; the run read it as numbers (RUN/columns.json)")
        return ((np.asarray(col.values) - spec.mean) / spec.std)[:, None]
    codes = _codes(col, spec, where)
    if spec.kind == "binary":
        return codes[:, None].astype(np.float64)
    return np.eye(len(spec.labels))[codes]


def _codes(col: RawColumn, spec: Column, where: str) -> np.ndarray:
    """Each cell's position among the column's labels; DataError for a value the run never saw.

    Text labels match cells as text (numbers written as ``format_value`` does), number
    labels match cells as numbers (1 == 1.0)."""
    text = any(isinstance(v, str) for v in spec.labels)
    index = {(str(v) if text else float(v)): i for i, v in enumerate(spec.labels)}
    codes = np.empty(len(col.values), dtype=np.int64)
    for r, v in enumerate(col.values):
        key = format_value(v) if text else (float(v) if col.numeric else None)
        i = None if key is None else index.get(key)  # None: a non-number in a column of numbers
        if i is None:
            levels = ", ".join(format_value(x) for x in spec.labels[:8]) + (", ..." if len(spec.labels) > 8 else "")
            raise DataError(f"{where}: column {col.name!r} holds {format_value(v)!r} in data row {r + 1}, a value the run never saw (its values: {levels})")
        codes[r] = i
    return codes


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _decode(block: np.ndarray, spec: Column) -> list[Any]:
    if spec.kind == "real":  # rows are coded in float32: 7 significant digits are all they hold
        return [float(format(v, ".7g")) for v in block[:, 0].astype(np.float64) * spec.std + spec.mean]
    codes = (block[:, 0] > 0.5).astype(int) if spec.kind == "binary" else block.argmax(1)
    return [spec.labels[int(i)] for i in codes]


def format_value(v: Any) -> str:
    """A cell as text: integral numbers without a trailing .0, others to 10 significant digits."""
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else format(float(v), ".10g")
    return str(v)


def infer(raw: list[RawColumn], train_rows: np.ndarray, categorical: list[str], max_levels: int, where: str) -> Columns:
    """Infer every column's kind (module docstring); ``categorical`` names numeric columns to read as categories."""
    names = [c.name for c in raw]
    unknown = [n for n in categorical if n not in names]
    if unknown:
        listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise DataError(f"data.categorical names column {unknown[0]!r}, which {where} does not have; its columns: {listed}")
    return Columns([infer_column(c, train_rows, c.name in categorical, max_levels, where) for c in raw])
