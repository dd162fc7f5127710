"""``data.validation``: part of the training set held out for selection (``train.keep_best``,
``train.early_stop``, ``reparam sweep``), so that the test set is read once, at the end.

The held-out rows are drawn with a fixed seed (``SPLIT_SEED``), not the run's: every run of
the same data (a grid of seeds, a sweep's trials) selects on the same validation set. The
split follows the source's own loading: a table's columns (their kinds and standardization) are
read from its whole training set, validation rows included.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import DataError, require

#: Seeds the choice of the validation rows (fixed: the same rows for every run seed).
SPLIT_SEED = 20260
#: Seeds the one fixed binarization of the validation images (as ``TEST_BINARIZATION_SEED`` the test set's).
VALIDATION_BINARIZATION_SEED = 54321


def check(cfg) -> None:
    """``data.validation``: 0 (none), a count of images >= 1, or a fraction in (0, 1)."""
    v = cfg.validation
    whole = isinstance(v, int) and not isinstance(v, bool)
    require(whole and v >= 0 or isinstance(v, float) and 0 < v < 1, f"data.validation must be a number of training images (>= 1) or a fraction in (0, 1); 0 for none, got {v!r}")


def count(validation: int | float, n: int) -> int:
    """How many of ``n`` training rows ``data.validation`` holds out (a fraction rounded, at least 1)."""
    k = validation if isinstance(validation, int) else max(1, round(validation * n))
    if k >= n:
        raise DataError(f"data.validation={validation} holds out {k} of the {n} training images; leave some to train on")
    return k


def hold_out(data, validation: int | float):
    """``data`` (a ``base.Data``) with ``valid`` (and ``valid_labels``) taken from its training rows
    (N_val = ``count``), at random with ``SPLIT_SEED``; the rest stays ``train``, in its order (known factors split with them)."""
    if not validation:
        return data
    n = len(data.train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    held, kept = order[: count(validation, n)].sort().values, order[count(validation, n) :].sort().values
    labels, f = data.train_labels, data.factors
    return dataclasses.replace(
        data, train=data.train[kept], valid=data.train[held],
        train_labels=None if labels is None else labels[kept], valid_labels=None if labels is None else labels[held],
        factors=None if f is None else dataclasses.replace(f, train=f.train[kept], valid=f.train[held]),
    )  # fmt: skip
