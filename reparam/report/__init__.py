"""The run report: matplotlib figures and one self-contained report.html per run.

    from reparam.report import write_report, write_comparison
    write_report("runs/my-run")                      # -> runs/my-run/report.html
    write_comparison(["runs/a", "runs/b"], "ab.html")  # runs side by side
"""

from __future__ import annotations

from .build import write_comparison, write_report

__all__ = ["write_comparison", "write_report"]
