"""The report of a table run: per-column reconstructions, marginals and the latent scatter in
place of image grids; the samples as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from reparam.report.run import open_run
from reparam.report.table import csv_bytes, sample_rows
from tests.conftest import tiny_config
from tests.report.test_report import read_png

TABLE_FIGURES = {"curves", "kl_per_dim", "columns", "marginals", "codes"}


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    """Breast cancer (30 real columns and a binary diagnosis), two epochs, with its report."""
    from reparam.train import train

    cfg = tiny_config("data.name=table", "data.path=sklearn:breast_cancer", "train.report=true", "train.batch_size=100")
    return train(cfg, tmp_path_factory.mktemp("table") / "run")


def test_a_table_report_draws_columns_not_images(table_run):
    files = {p.stem: p for p in (table_run / "figures").glob("*.png")}
    assert set(files) == TABLE_FIGURES
    for p in files.values():
        assert read_png(p.read_bytes()).shape[0] > 100
    page = (table_run / "report.html").read_text()
    assert "Per-column reconstructions" in page and "Per-column marginals" in page and "Traversals" not in page


def test_sampled_rows_decode_to_labels_and_original_units(table_run):
    view = open_run(table_run)
    x = sample_rows(view.model, 50, seed=1)
    assert x.shape == (50, 31) and set(x[:, -1].unique().tolist()) <= {0.0, 1.0}
    rows = list(csv.reader(io.StringIO(csv_bytes(view.columns, x).decode())))
    assert rows[0] == view.columns.names and len(rows) == 51
    assert {r[-1] for r in rows[1:]} <= {"benign", "malignant"}
    radius = [float(r[0]) for r in rows[1:]]  # mean radius of the cell nuclei: 7 .. 28
    assert 5 < sum(radius) / len(radius) < 30
