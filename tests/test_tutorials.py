"""The tutorial notebooks run from top to bottom (tiny settings) and are kept without outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "docs" / "tutorials").glob("*.ipynb"))


def test_there_are_three_or_four_tutorials_and_the_docs_list_them():
    assert 3 <= len(NOTEBOOKS) <= 4
    listed = (ROOT / "docs" / "tutorials.md").read_text()
    assert all(f"tutorials/{nb.name}" in listed for nb in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs(path):
    """Outputs and execution counts stay out of the repository (clear them before committing)."""
    book = json.loads(path.read_text())
    for i, cell in enumerate(book["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name}, cell {i} holds outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_tiny_settings(path, tmp_path, monkeypatch):
    """Every cell executes without error in a fresh kernel, in an empty folder, REPARAM_TUTORIAL_TINY=1."""
    nbformat = pytest.importorskip("nbformat", reason="pip install nbclient nbformat ipykernel (in the test extra)")
    nbclient = pytest.importorskip("nbclient", reason="pip install nbclient nbformat ipykernel (in the test extra)")
    pytest.importorskip("ipykernel", reason="pip install ipykernel (in the test extra)")
    monkeypatch.setenv("REPARAM_TUTORIAL_TINY", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert list(Path(tmp_path / "runs").iterdir())
