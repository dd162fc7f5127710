"""Your own tables: reading CSV, Parquet, (N, F) arrays and scikit-learn's bundled tables,
inferring each column's kind, and coding rows for the ``table`` likelihood head.

    from reparam import tables
    raw = tables.read("sklearn:wine")                       # named columns
    cols = tables.infer(raw, train_rows, [], 50, "wine")    # kinds and statistics
    x = cols.encode(raw, "wine")                            # (N, F') float32
    rows = cols.decode(x)                                   # back to original units and labels
"""

from __future__ import annotations

from .columns import KINDS, Column, Columns, format_value, infer
from .read import BUNDLED, PARQUET_EXTRA, RawColumn, read

__all__ = ["BUNDLED", "KINDS", "PARQUET_EXTRA", "Column", "Columns", "RawColumn", "format_value", "infer", "read"]
