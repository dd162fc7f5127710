"""mkdocs hook: the Results page gets the tables of every BENCHMARKS.md section.

    hooks: [benchmarks/docs_results.py]     (mkdocs.yml)

A page holding the marker ``<!-- results -->`` has it replaced, at build time, by the same
tables ``benchmarks/readme_results.py`` puts in the README: the documentation never holds a
number that BENCHMARKS.md, and through it a script, does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import BENCHMARKS  # noqa: E402
from benchmarks.readme_results import results  # noqa: E402

MARKER = "<!-- results -->"


def render(markdown: str) -> str:
    """``markdown`` with the marker replaced by the results tables (unchanged without one)."""
    return markdown.replace(MARKER, results(BENCHMARKS.read_text())) if MARKER in markdown else markdown


def on_page_markdown(markdown: str, **kwargs) -> str:
    return render(markdown)
