"""Data sources, held in memory as images in [0, 1] (8-bit ones as uint8 levels, ``images.unit``) or coded rows (tables).

One file per source (``digits``, ``mnist``, ``file``: ``arrays.py``, ``folder``, ``table``,
``hf``, ``python``, ``shapes``), each a ``Source`` registered with ``base.register``; ``base.py`` holds the
contract, the ``data`` rules every source shares, binarization and M2's labelled subset;
``images.py`` the layout rules of arrays of images; ``storage.py`` how images are held. Importing the package imports every module in this
folder, so the registry is complete and a new source is one file.
"""

from __future__ import annotations

import importlib
import pkgutil

#: The order in which data.name's messages have always listed the sources; any other follows.
_LISTED = ("digits", "mnist", "arrays", "folder", "table")

for _module in (*_LISTED, *(m.name for m in pkgutil.iter_modules(__path__))):  # each source module registers its source
    importlib.import_module(f"{__name__}.{_module}")

from .arrays import ARRAY_SUFFIXES  # noqa: E402
from .base import (  # noqa: E402
    BINARIZATIONS,
    SOURCES,
    TEST_BINARIZATION_SEED,
    Data,
    Factors,
    Source,
    binarize,
    changed,
    check,
    check_labels,
    draw_binary,
    infer_source,
    labelled_subset,
    load,
    prepare,
    register,
    source,
)
from .digits import DIGITS_TEST, load_digits  # noqa: E402
from .folder import IMAGE_SUFFIXES, load_folder  # noqa: E402
from .images import CHANNELS, channels_last, check_layout, class_names, compact, labels_of, load_arrays, split, split_rows, to_unit  # noqa: E402
from .mnist import download, mnist_path, sha256  # noqa: E402
from .storage import LEVELS, levels, unit  # noqa: E402
from .table import MAX_LEVELS, is_table_path, load_table  # noqa: E402

__all__ = [
    "ARRAY_SUFFIXES", "BINARIZATIONS", "CHANNELS", "DIGITS_TEST", "IMAGE_SUFFIXES", "LEVELS", "MAX_LEVELS", "SOURCES",
    "TEST_BINARIZATION_SEED", "Data", "Factors", "Source", "binarize", "changed", "channels_last", "check", "check_labels",
    "check_layout", "class_names", "compact", "download", "draw_binary", "infer_source", "is_table_path", "labelled_subset",
    "labels_of", "levels", "load", "load_arrays", "load_digits", "load_folder", "load_table", "mnist_path", "prepare", "register",
    "sha256", "source", "split", "split_rows", "to_unit", "unit",
]  # fmt: skip
