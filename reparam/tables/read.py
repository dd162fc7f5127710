"""Reading a table into named columns: CSV, Parquet, a 2-D ``.npy``/``.npz`` array, or a
small dataset bundled with scikit-learn (``sklearn:wine``).

A column comes back as numbers (float64) when every cell of it parses as one, else as text.
No cell may be missing: an empty cell, ``NA``, ``NaN``, ``null``, ``None``, ``n/a`` or ``?``
(any case) is refused with its row and column, as is an infinite number. Rows in errors are
data rows, counted from 1 without the header, in every format.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

MISSING = frozenset({"", "na", "nan", "n/a", "null", "none", "?"})
SUFFIXES = (".csv", ".parquet", ".pq", ".npy", ".npz")
PARQUET_EXTRA = "pip install 'reparam[parquet]'"


@dataclass
class RawColumn:
    """One column as read: ``values`` is (N,) float64 (``numeric``) or a list of N strings."""

    name: str
    values: np.ndarray | list[str]
    numeric: bool


def read(path: str) -> list[RawColumn]:
    """The columns of ``path`` (a file, or ``sklearn:NAME``), each of N >= 1 rows; DataError otherwise."""
    if path.startswith("sklearn:"):
        return read_sklearn(path.partition(":")[2])
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"table {p} does not exist")
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{p}: a table is a .csv, .parquet, .npy or .npz file (or sklearn:wine); got {suffix or 'no suffix'}")
    reader = {".csv": read_csv, ".parquet": read_parquet, ".pq": read_parquet}.get(suffix, read_array)
    columns = reader(p)
    if not columns or len(columns[0].values) == 0:
        raise DataError(f"{p} holds no rows; a table needs a header and at least two rows")
    return columns


def _missing(where: str, name: str, row: int) -> DataError:
    return DataError(f"{where}: column {name!r} has a missing cell in data row {row}; fill or drop missing cells first")


def _numbers(cells: list[str]) -> np.ndarray | None:
    """The cells as float64 if every one parses as a number, else None."""
    try:
        return np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        return None


def column(name: str, cells: list[str], where: str, first_row: int = 1) -> RawColumn:
    """Cells of one column (text) -> numbers where all parse; refuses missing and infinite cells."""
    for i, c in enumerate(cells):
        if c.strip().lower() in MISSING:
            raise _missing(where, name, i + first_row)
    cells = [c.strip() for c in cells]
    numbers = _numbers(cells)
    return RawColumn(name, cells, False) if numbers is None else numeric(name, numbers, where, first_row)


def numeric(name: str, numbers: np.ndarray, where: str, first_row: int = 1) -> RawColumn:
    """A column of numbers; DataError naming the first cell that is not finite."""
    bad = np.flatnonzero(~np.isfinite(numbers))
    if len(bad):
        raise DataError(f"{where}: column {name!r} holds {numbers[bad[0]]} in data row {bad[0] + first_row}; only finite numbers can be modelled")
    return RawColumn(name, numbers, True)


def read_csv(path: Path) -> list[RawColumn]:
    """A CSV with a header row (names); a first row of numbers only is data, columns named column_0, ...

    The delimiter is a comma, or a semicolon or tab where the file's first lines use one
    consistently (csv.Sniffer). With pyarrow installed (``reparam[parquet]``) ``pyarrow.csv``
    parses the cells, several times faster on a large file; the standard library's csv
    module does otherwise. Both give the same columns, kinds and errors."""
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return read_csv_text(path)
    return read_csv_arrow(path)


def read_csv_text(path: Path) -> list[RawColumn]:
    """``read_csv`` through the standard library's csv module."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f, delimiter=_delimiter(f)) if r]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path} as CSV: {e}") from None
    if not rows:
        raise DataError(f"{path} is empty; a table needs a header and at least two rows")
    names, header = _names(rows[0], path)
    rows = rows[header:]
    for i, r in enumerate(rows):
        if len(r) != len(names):
            raise DataError(f"{path}: data row {i + 1} has {len(r)} cell{'s' * (len(r) != 1)}, the header {len(names)}; every row needs one cell per column")
    return [column(n, [r[j] for r in rows], str(path)) for j, n in enumerate(names)]


def _names(first: list[str], path: Path) -> tuple[list[str], int]:
    """The column names from the first row, and 1 if that row is a header (0: numbers only, data)."""
    if _numbers([c.strip() for c in first]) is not None:
        return [f"column_{j}" for j in range(len(first))], 0
    names = [h.strip() for h in first]
    _check_names(names, path)
    return names, 1


def read_csv_arrow(path: Path) -> list[RawColumn]:
    """``read_csv`` through ``pyarrow.csv``: the header and delimiter found as the standard
    library finds them, every cell read as text, a column of numbers cast in one call. Whatever
    pyarrow's parser refuses (a ragged row, a line break inside quotes, bad UTF-8) is read
    again by ``read_csv_text``, which names the problem as it always has."""
    import pyarrow as pa
    import pyarrow.csv as pv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            delimiter = _delimiter(f)
            first = next((r for r in csv.reader(f, delimiter=delimiter) if r), None)
    except (UnicodeDecodeError, csv.Error):
        first = None
    if first is None:
        return read_csv_text(path)
    names, header = _names(first, path)
    try:
        table = pv.read_csv(
            path,
            read_options=pv.ReadOptions(column_names=[f"c{j}" for j in range(len(names))], skip_rows=header),
            parse_options=pv.ParseOptions(delimiter=delimiter),
            convert_options=pv.ConvertOptions(column_types={f"c{j}": pa.string() for j in range(len(names))}, null_values=[],
                                              strings_can_be_null=False, quoted_strings_can_be_null=False),
        )  # fmt: skip
    except (OSError, pa.ArrowException):
        return read_csv_text(path)
    if header and (_header_rows(path) != 1 or any("\n" in c or "\r" in c for c in first)):  # the header is not line 1 alone
        return read_csv_text(path)
    return [_text_column(name, table.column(j), str(path), pa) for j, name in enumerate(names)]


def _header_rows(path: Path) -> int:
    """Lines up to and including the first that is not blank (what skip_rows=1 must skip)."""
    with open(path, "rb") as f:
        for i, line in enumerate(f, start=1):
            if line.strip(b"\r\n"):
                return i
    return 0


def _text_column(name: str, cells, where: str, pa) -> RawColumn:
    """A column of text cells (a pyarrow string array) as ``column`` reads it: cast to numbers
    at once where pyarrow parses every cell (pyarrow reads no number that Python's float does
    not), cell by cell in Python otherwise (text, and numbers such as 1_000 that only Python reads).
    Of the missing-cell words only nan parses as a number: NaN cells are looked at one by one."""
    import pyarrow.compute as pc

    try:
        parsed = pc.cast(cells, pa.float64())
    except pa.ArrowInvalid:
        try:
            parsed = pc.cast(pc.utf8_trim_whitespace(cells), pa.float64())
        except pa.ArrowInvalid:
            return column(name, cells.to_pylist(), where)
    numbers = parsed.to_numpy()
    for row in np.flatnonzero(np.isnan(numbers)).tolist():
        if cells[row].as_py().strip().lower() in MISSING:
            raise _missing(where, name, row + 1)
    return numeric(name, numbers, where)


def _delimiter(f) -> str:
    """',' unless the first lines are consistently split by ';' or a tab; the file is rewound."""
    sample = f.read(1 << 16)
    f.seek(0)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _check_names(names: list[str], where) -> None:
    if any(not n for n in names):
        raise DataError(f"{where}: column {names.index('') + 1} has no name; name every column in the header row")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{where}: column name {dup[0]!r} appears twice; give every column its own name")


def read_parquet(path: Path) -> list[RawColumn]:
    """A Parquet file through pyarrow (the ``reparam[parquet]`` extra): numbers, booleans, text."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"reading Parquet needs pyarrow: {PARQUET_EXTRA}") from None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read {path} as Parquet: {str(e).splitlines()[0]}") from None
    _check_names(table.column_names, path)
    return [_arrow_column(name, table.column(name), path, pa) for name in table.column_names]


def _arrow_column(name: str, col, path: Path, pa) -> RawColumn:
    values = col.to_pylist()
    if None in values:
        raise _missing(str(path), name, values.index(None) + 1)
    t = col.type
    if pa.types.is_boolean(t):
        return RawColumn(name, [str(v) for v in values], False)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return numeric(name, np.array(values, dtype=np.float64), str(path))
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return column(name, [str(v) for v in values], str(path))
    raise DataError(f"{path}: column {name!r} has type {t}; a table column holds numbers, booleans or text")


def read_array(path: Path) -> list[RawColumn]:
    """A (N, F) array of real numbers (.npy, or an .npz holding one array), columns column_0, ..."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            x = loaded
        else:
            with loaded as f:
                if len(f.files) != 1:
                    raise DataError(f"{path} holds arrays {sorted(f.files)}; a table from .npz needs exactly one (N, F) array")
                x = f[f.files[0]]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if x.ndim != 2 or 0 in x.shape:
        raise DataError(f"{path} has shape {x.shape}; a table from an array needs shape (N, F) with N, F >= 1")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
        raise DataError(f"{path} holds {x.dtype} values; a table from an array needs real numbers")
    x = x.astype(np.float64)
    return [numeric(f"column_{j}", x[:, j].copy(), str(path)) for j in range(x.shape[1])]


#: sklearn:NAME -> (loader, keyword arguments, the target column's name). Classification
#: targets are read as their class names, so they become categorical or binary columns.
BUNDLED = {
    "wine": ("load_wine", {}, "class"),
    "breast_cancer": ("load_breast_cancer", {}, "diagnosis"),
    "iris": ("load_iris", {}, "species"),
    "diabetes": ("load_diabetes", {"scaled": False}, "progression"),
}


def read_sklearn(name: str) -> list[RawColumn]:
    """A dataset that ships with scikit-learn (no download): its features, then its target."""
    if name not in BUNDLED:
        raise DataError(f"unknown bundled table sklearn:{name}; valid: {', '.join('sklearn:' + n for n in BUNDLED)}")
    import sklearn.datasets

    loader, kwargs, target = BUNDLED[name]
    bunch = getattr(sklearn.datasets, loader)(**kwargs)
    cols = [RawColumn(str(n), bunch.data[:, j].astype(np.float64), True) for j, n in enumerate(bunch.feature_names)]
    y = bunch.target
    if "target_names" in bunch:
        cols.append(RawColumn(target, [str(bunch.target_names[int(v)]) for v in y], False))
    else:
        cols.append(RawColumn(target, y.astype(np.float64), True))
    return cols
