"""``reparam report RUN [RUN ...]``: the run report, or several runs side by side."""

from __future__ import annotations

import argparse

DEFAULT_COMPARISON = "comparison.html"


def cmd_report(a: argparse.Namespace) -> int:
    from .build import write_comparison, write_report

    if len(a.runs) == 1:
        print(write_report(a.runs[0], out=a.out, seed=a.seed))
    else:
        print(write_comparison(a.runs, a.out or DEFAULT_COMPARISON, seed=a.seed))
    return 0


def add_commands(sub) -> None:
    r = sub.add_parser("report", help="write report.html for a run, or compare several runs side by side")
    r.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s)")
    r.add_argument("--out", help=f"HTML file (default: RUN/report.html; {DEFAULT_COMPARISON} for several runs)")
    r.add_argument("--seed", type=int, default=0, help="seed for the prior samples (default 0)")
    r.set_defaults(func=cmd_report)
