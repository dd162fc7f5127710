"""``reparam train [CONFIG.toml] [key=value ...]`` and ``reparam train --resume RUN``."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from ..errors import ConfigError, ReparamError


def split_settings(args: list[str]) -> tuple[str | None, list[str]]:
    """(an optional config file, key=value overrides) from train's positional arguments."""
    files = [a for a in args if "=" not in a]
    if len(files) > 1:
        raise ReparamError(f"expected at most one config file and key=value overrides, got {files}")
    return (files[0] if files else None), [a for a in args if "=" in a]


def default_out(cfg) -> Path:
    """runs/<time>-<data>-<family>, with a counter if that folder exists."""
    base = Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.data.name}-{cfg.latent.family}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def resume_settings(settings: list[str]) -> dict:
    """--resume takes no config file and no override but train.epochs=N and train.budget=T (to train longer)."""
    from ..config import duration_seconds, parse_value

    out: dict = {}
    for item in settings:
        key, _, value = item.partition("=")
        parsed = parse_value(value)
        if key == "train.epochs":
            out["epochs"] = epoch_count(value, parsed)
        elif key == "train.budget":
            duration_seconds(parsed, "train.budget")  # ConfigError naming the forms
            out["budget"] = parsed
        else:
            raise ReparamError(f"--resume takes only train.epochs=N and train.budget=T (the run keeps its config.json), got {item!r}")
    return out


def epoch_count(text: str, parsed) -> int:
    """train.epochs=N of --resume as an integer >= 1; ConfigError saying what is wrong with the value."""
    number = isinstance(parsed, (int, float)) and not isinstance(parsed, bool)
    if not number or isinstance(parsed, float):
        whole = f" (write {int(parsed)})" if number and float(parsed).is_integer() else ""
        raise ConfigError(f"train.epochs must be a whole number of epochs, got {text if number else repr(text)}{whole}")
    if parsed < 1:
        raise ConfigError(f"train.epochs must be >= 1, got {parsed}")
    return parsed


def plural(n: float, word: str, many: str = "") -> str:
    """``1 epoch``, ``2 epochs``, ``1.5 passes``."""
    return f"{n:.12g} {word if n == 1 else many or word + 's'}"


def summary_line(summary: dict, run_dir: Path) -> str:
    """The line ``reparam train`` ends with: test ELBO, the NLL with its K and images, the passes made."""
    if "passes" in summary:
        passes = f"{plural(summary['passes'], 'pass', 'passes')} ({plural(summary['steps'], 'step')})"
    else:
        passes = plural(summary["epochs"], "epoch")
    head = f"test ELBO {summary['elbo']:.2f} nats, "
    if summary.get("nll") is None:
        nll = "NLL not estimated (train.eval_k=0)"
    else:
        images = "" if summary["n"] == summary.get("n_test", summary["n"]) else f", {summary['n']:,} of {summary['n_test']:,} test images"
        nll = f"NLL {summary['nll']:.2f} ± {summary['nll_se']:.2f} nats (k={summary['k']}{images})"
    if summary.get("labels", "").startswith("given"):
        nll += " given the test labels"
    if "classification_error" in summary:
        se = f" ± {100 * summary['classification_error_se']:.1f}" if "classification_error_se" in summary else ""
        nll += f", classification error {100 * summary['classification_error']:.1f}{se}%"
    hint = f"; full precision: reparam eval {run_dir} --k 5000" if "nll_plan" in summary else ""
    return f"{head}{nll}, {passes} in {summary['train_seconds']:.1f} s{hint}"


def cmd_train(a: argparse.Namespace) -> int:
    from .. import config
    from .run import resume, train

    if a.resume and (a.out or a.overwrite):
        raise ReparamError(f"--resume continues {a.resume} in place; --out and --overwrite do not apply to it")
    if a.resume:
        run_dir = resume(a.resume, progress=False if a.quiet else None, **resume_settings(a.settings))
    else:
        path, overrides = split_settings(a.settings)
        cfg = config.load(path, overrides)
        if a.quiet:
            cfg.train.progress = False
        run_dir = train(cfg, a.out or default_out(cfg), overwrite=a.overwrite)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the job
        return 0
    summary = json.loads((run_dir / "summary.json").read_text())
    print(summary_line(summary, run_dir))
    print(run_dir)
    return 0


def add_commands(sub) -> None:
    t = sub.add_parser("train", help="train a VAE (digits by default)")
    t.add_argument("settings", nargs="*", help="an optional CONFIG.toml, then key=value overrides")
    t.add_argument("--out", help="run folder (default: runs/<time>-<data>-<family>)")
    t.add_argument("--overwrite", action="store_true", help="reuse a folder that already holds a run")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its newest checkpoint (train.epochs=N or train.budget=T to extend)")
    t.set_defaults(func=cmd_train)
