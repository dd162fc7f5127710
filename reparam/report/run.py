"""A finished run, opened for reporting: model, metrics, summary and a slice of its test set."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import runs
from ..errors import ReparamError, RunError
from ..model import VAE

#: Test images used for diagnostics and the latent scatter (enough for a stable picture).
MAX_TEST = 2000


@dataclass
class RunView:
    """What the report reads from one run folder.

    ``test`` is (N, *x_shape) in [0, 1] with N <= MAX_TEST (a table: coded rows (N, F'));
    ``labels`` is (N,) or None; ``columns`` a table's ``reparam.tables.Columns``, else None.
    """

    run_dir: Path
    model: VAE
    config: dict
    metrics: list[dict]
    summary: dict
    test: torch.Tensor
    labels: torch.Tensor | None
    columns: Any = None
    label: int | None = None  # a conditional run: the class whose figures are drawn

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def conditional(self) -> bool:
        return bool(self.model.classes)

    def given(self):
        """The model given each test image's label (a conditional run), else the model."""
        return self.model.given(self.labels) if self.conditional else self.model

    def of_class(self):
        """(the model given class ``label``, that class's test images, their labels) for a
        conditional run; (the model, the test images, their labels) otherwise."""
        if not self.conditional:
            return self.model, self.test, self.labels
        mask = self.labels == self.label
        if not bool(mask.any()):  # no test image of that class among those read: use them all
            mask = torch.ones_like(mask)
        return self.model.given(torch.tensor(self.label)), self.test[mask], self.labels[mask]

    @property
    def title(self) -> str:
        cfg = self.model.config
        return f"{self.name}: {cfg.latent.family} latents, D = {cfg.latent.dim}, {cfg.data.name}"


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl -> one dict per evaluation (empty if the file is missing)."""
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise RunError(f"{path}, line {i}, is not valid JSON ({e}); the run folder is damaged") from None
    return rows


def ascii_index(text: str, n: int) -> int | None:
    """The index in [0, n) that ``text`` writes in ASCII decimal digits, else None: '²' passes
    str.isdigit and int() refuses it; '٣' (Arabic-Indic three) passes both and is no index either."""
    return int(text) if text.isascii() and text.isdigit() and int(text) < n else None


def class_index(model, label: str | None) -> int | None:
    """The class a ``--label`` names (a class name, or its index) in a conditional run; None
    for no label. ReparamError (one line) for an unknown class or a run without labels."""
    names = model.class_names
    if label is None:
        return None
    if names is None:
        raise ReparamError(f"--label applies to a conditional run (model.condition=label); this one has no labels (got --label {label})")
    if label in names:
        return names.index(label)
    index = ascii_index(label, len(names))
    if index is not None:
        return index
    raise ReparamError(f"--label {label} is not a class of this run; its classes are {', '.join(names)} (or their indices 0..{len(names) - 1})")


def open_run(run_dir: str | Path, max_test: int = MAX_TEST, label: str | None = None, source=None) -> RunView:
    """Load a run folder; raises RunError (missing folder, no model) or DataError (data gone).

    A conditional run's figures are drawn for class ``label`` (a name or index; default the first).
    ``source``: the run's data (``reparam.data.Data``) when the caller holds them already
    (the trainer, at the end of a run), so they are not read and held twice."""
    run_dir = Path(run_dir)
    model = runs.load(run_dir)
    index = class_index(model, label)
    source = runs.load_data(run_dir, model.config) if source is None else source
    labels = None if source.test_labels is None else source.test_labels[:max_test]
    summary = runs.read_json(run_dir / runs.SUMMARY) if (run_dir / runs.SUMMARY).exists() else {}
    return RunView(
        run_dir=run_dir,
        model=model,
        config=runs.read_json(run_dir / runs.CONFIG),
        metrics=read_metrics(run_dir / runs.METRICS),
        summary=summary,
        test=source.test[:max_test],
        labels=labels,
        columns=source.columns,
        label=(0 if index is None else index) if model.classes else None,
    )
