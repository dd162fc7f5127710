"""``reparam report RUN [RUN ...]`` (the run report, or several runs side by side) and ``reparam sample RUN``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ReparamError, check_seed

DEFAULT_COMPARISON = "comparison.html"


def cmd_report(a: argparse.Namespace) -> int:
    from .build import write_comparison, write_report

    check_seed("--seed", a.seed)
    if len(a.runs) == 1:
        print(write_report(a.runs[0], out=a.out, seed=a.seed))
    else:
        print(write_comparison(a.runs, a.out or DEFAULT_COMPARISON, seed=a.seed))
    return 0


def cmd_sample(a: argparse.Namespace) -> int:
    from .. import runs
    from . import pictures

    if a.n < 1:
        raise ReparamError(f"--n must be >= 1, got {a.n}")
    check_seed("--seed", a.seed)
    model = runs.load(a.run)
    out = Path(a.out) if a.out else Path(a.run) / "samples.png"
    if out.is_dir():
        raise ReparamError(f"--out {out} is a folder, not a file; name a .png file")
    if not out.parent.is_dir():
        raise ReparamError(f"folder {out.parent} does not exist; create it or choose another --out")
    print(pictures.save_samples(model, out, n=a.n, seed=a.seed))
    return 0


def add_commands(sub) -> None:
    s = sub.add_parser("sample", help="a PNG grid of decoded prior samples")
    s.add_argument("run")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--out", help="PNG file (default: RUN/samples.png)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sample)
    r = sub.add_parser("report", help="write report.html for a run, or compare several runs side by side")
    r.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s)")
    r.add_argument("--out", help=f"HTML file (default: RUN/report.html; {DEFAULT_COMPARISON} for several runs)")
    r.add_argument("--seed", type=int, default=0, help="seed for the prior samples (default 0)")
    r.set_defaults(func=cmd_report)
