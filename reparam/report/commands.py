"""``reparam report RUN [RUN ...]`` (the run report, or several runs side by side) and ``reparam sample RUN``
(a PNG grid of decoded prior samples, per class or of one ``--label`` for a conditional run, or for a
table run a CSV of rows drawn from the model in original units)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ReparamError, check_seed
from ..files import check_output
from .run import class_index

DEFAULT_COMPARISON = "comparison.html"


def cmd_report(a: argparse.Namespace) -> int:
    from .build import write_comparison, write_report

    check_seed("--seed", a.seed)
    if len(a.runs) == 1:
        print(write_report(a.runs[0], out=a.out, seed=a.seed, label=a.label, overwrite=a.overwrite))
    elif a.label is not None:
        raise ReparamError("--label picks the class of one conditional run's report; pass one run")
    else:
        print(write_comparison(a.runs, a.out or DEFAULT_COMPARISON, seed=a.seed, overwrite=a.overwrite))
    return 0


def cmd_sample(a: argparse.Namespace) -> int:
    from .. import runs
    from . import pictures, table

    if a.n is not None and a.n < 1:
        raise ReparamError(f"--n must be >= 1, got {a.n}")
    check_seed("--seed", a.seed)
    model = runs.load(a.run)
    label = class_index(model, a.label)
    kind = ".png" if model.columns is None else ".csv"
    out = check_output(a.out or Path(a.run) / f"samples{kind}", a.overwrite or not a.out)  # RUN/samples.*: rewritten at every call
    if model.columns is not None and out.suffix.lower() != ".csv":
        raise ReparamError(f"{a.run} models a table: its samples are rows, written as CSV; choose --out FILE.csv (got {out.name})")
    if model.columns is None and out.suffix.lower() == ".csv":
        raise ReparamError(f"{a.run} models images: its samples are a PNG grid; choose --out FILE.png (got {out.name})")
    if model.columns is not None:
        print(table.save_samples_csv(model, model.columns, out, n=a.n or 64, seed=a.seed))
    elif model.classes:  # one class, or a row per class
        print(pictures.save_class_samples(model, out, a.n, a.seed, label))
    else:
        print(pictures.save_samples(model, out, n=a.n or 64, seed=a.seed))
    return 0


def add_commands(sub) -> None:
    s = sub.add_parser("sample", help="a PNG grid of decoded prior samples (a table run: a CSV of sampled rows)")
    s.add_argument("run")
    s.add_argument("--n", type=int, help="samples (images or rows; default 64; a conditional run: per class, default 10)")
    s.add_argument("--label", help="a conditional run: draw from p(z|y) of this class (name or index); default: a row per class")
    s.add_argument("--out", help="PNG file (default: RUN/samples.png, rewritten at every call); for a table run a CSV file "
                                 "(default: RUN/samples.csv); an existing file is replaced only with --overwrite")  # fmt: skip
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never a device, FIFO or socket)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sample)
    r = sub.add_parser("report", help="write report.html for a run, or compare several runs side by side")
    r.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s)")
    r.add_argument("--out", help=f"HTML file (default: RUN/report.html, rewritten at every call; {DEFAULT_COMPARISON} for several "
                                 "runs); an existing file is replaced only with --overwrite")  # fmt: skip
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never a device, FIFO or socket)")
    r.add_argument("--seed", type=int, default=0, help="seed for the prior samples (default 0)")
    r.add_argument("--label", help="a conditional run: the class (name or index) whose figures are drawn (default: the first)")
    r.set_defaults(func=cmd_report)
