"""``reparam train [CONFIG.toml] [key=value ...]`` and ``reparam train --resume RUN``."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError, ReparamError

MEMBERS = "members.json"  # reparam.runs.MEMBERS, named here so the command line starts without torch


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
    kept = summary.get("kept", {})
    if kept.get("weights") == "best":  # train.keep_best: the numbers describe the best weights, not the last
        stop = ", stopped early" if summary.get("stopped_by") == "early_stop" else ""
        passes += f"{stop}; weights of epoch {kept['epoch']}, the best validation {kept['metric'][4:]} ({kept['value']:.2f})"
    return f"{head}{nll}, {passes} in {summary['train_seconds']:.1f} s{hint}"


def describe(cfg) -> str:
    """A config in a few words: the data, the length of training, the latent, the networks, the likelihood and the bound."""
    data = f"{cfg.data.name} ({cfg.data.path})" if cfg.data.path else cfg.data.name
    length = f"for {cfg.train.budget}" if cfg.train.budget_seconds else f"for {plural(cfg.train.epochs, 'epoch')}"
    latent = f"{cfg.latent.family} latent, dim {cfg.latent.dim}" + "".join(f" + {d}" for d in cfg.model.stochastic)
    extras = []
    if cfg.latent.flow != "none":
        extras.append(f"{cfg.latent.flow} flow")
    if cfg.prior.name != "standard":
        extras.append(f"{cfg.prior.name} prior")
    if cfg.model.condition == "label":
        extras.append(f"M2 with {cfg.data.labeled:,} labels" if cfg.data.labeled else "given the labels")
    convs = f"conv {'-'.join(map(str, cfg.model.channels))} + " if cfg.model.arch == "conv" else ""
    hidden = "-".join(map(str, cfg.model.hidden)) or "linear"
    bound = cfg.objective.name + (f" k={cfg.objective.k}" if cfg.objective.k > 1 else "")
    parts = [latent, *extras, f"{convs}{cfg.model.arch if not convs else 'mlp'} {hidden}", f"{cfg.likelihood.name} likelihood", bound]
    return f"{data} {length}: " + "; ".join(parts)


def speaks(progress: bool) -> bool:
    """Whether this process talks while it works: progress on, and rank 0 under torchrun."""
    return progress and os.environ.get("RANK", "0") == "0"


def print_config(a: argparse.Namespace) -> int:
    """``--print-config``: the resolved config as TOML on stdout, nothing trained or written."""
    from .. import config, config_keys

    if a.resume:
        raise ReparamError(f"--print-config shows the config a new run would train with; {a.resume}'s own is {Path(a.resume) / 'config.json'}")
    if a.out or a.overwrite:
        raise ReparamError("--print-config writes nothing; --out and --overwrite do not apply to it")
    from .members import expand

    path, overrides = split_settings(a.settings)
    raw = config.load_raw(path, overrides)
    listed = expand(raw)
    if listed is None:
        print(config_keys.to_toml(config.from_dict(raw).to_dict()), end="")
        return 0
    for i, m in enumerate(listed):  # one config per member, each headed by its folder's name
        print(f"{chr(10) if i else ''}# member {m.name}\n{config_keys.to_toml(m.cfg.to_dict())}", end="")
    return 0


def start_training(a: argparse.Namespace) -> Path:
    from .. import config
    from . import members
    from .run import train

    path, overrides = split_settings(a.settings)
    raw = config.load_raw(path, overrides)
    listed = members.expand(raw)
    if listed is not None:
        return start_members(a, listed, members.grid_keys(raw))
    cfg = config.from_dict(raw)
    if a.quiet:
        cfg.train.progress = False
    out = Path(a.out) if a.out else default_out(cfg)
    opening = f"training a VAE on {describe(cfg)}; run folder {out}" if speaks(cfg.train.progress) else None
    with resumable_on_full_disk(out):
        return train(cfg, out, overwrite=a.overwrite, opening=opening)


def start_members(a: argparse.Namespace, listed: list, keys: list[str]) -> Path:
    """``reparam train`` with lists (``seed=[0,1,2]``): every member in one folder (``members.py``)."""
    from .ensemble import train_members

    for m in listed:
        m.cfg.train.progress = m.cfg.train.progress and not a.quiet
    cfg = listed[0].cfg
    out = Path(a.out) if a.out else default_out(cfg)
    if speaks(cfg.train.progress):
        names = ", ".join(m.name for m in listed)
        print(f"reparam: training {len(listed)} VAEs ({names}) on {describe(cfg)}; run folder {out}", file=sys.stderr, flush=True)
    with resumable_on_full_disk(out, marker=MEMBERS):
        return train_members(listed, keys, out, overwrite=a.overwrite, progress=cfg.train.progress)


def continue_training(a: argparse.Namespace) -> Path:
    from .. import runs
    from .ensemble import resume_members
    from .run import resume

    settings = resume_settings(a.settings)
    if (Path(a.resume) / MEMBERS).is_file():
        with resumable_on_full_disk(Path(a.resume), marker=MEMBERS):
            return resume_members(a.resume, progress=not a.quiet, **settings)
    finished = not settings and (Path(a.resume) / runs.SUMMARY).is_file()  # resume says so and trains nothing
    opening = None
    if not a.quiet and not finished:
        cfg = runs.read_config(runs.check_run_dir(a.resume))
        if speaks(cfg.train.progress):
            start = "from step 0 (it stopped before its first checkpoint)" if runs.untrained(Path(a.resume)) else "from its newest checkpoint"
            opening = f"continuing {a.resume} {start}: {describe(cfg)}"
    with resumable_on_full_disk(Path(a.resume)):
        return resume(a.resume, progress=False if a.quiet else None, opening=opening, **settings)


@contextmanager
def resumable_on_full_disk(run_dir: Path, marker: str = "config.json"):
    """A full disk once the run folder holds its config (``marker``): one line saying to free space and resume
    (what was checkpointed is kept; before the first checkpoint the run starts again from step 0)."""
    try:
        yield
    except OSError as e:
        if e.errno != errno.ENOSPC or not (run_dir / marker).is_file():
            raise
        raise ReparamError(f"{e.strerror} ({e.filename}); free space, then: reparam train --resume {run_dir}") from None


def closing(run_dir: Path, since: float) -> list[str]:
    """The lines ``reparam train`` ends with: the summary (an ensemble's: each member's, then each
    setting's over its seeds), the report when this command wrote one, the run folder last."""
    from .members import summary_lines

    summary = json.loads((run_dir / "summary.json").read_text())
    report = run_dir / "report.html"
    written = report.is_file() and report.stat().st_mtime >= since
    if (run_dir / MEMBERS).is_file():
        names = [m["name"] for m in json.loads((run_dir / MEMBERS).read_text())["members"]]
        each = [f"{name}: " + summary_line(json.loads((run_dir / name / "summary.json").read_text()), run_dir / name) for name in names]
        lines = [*each, *summary_lines(summary)]
    else:
        lines = [summary_line(summary, run_dir)]
    return [*lines, *([f"report: {report}"] if written else []), str(run_dir)]


def cmd_train(a: argparse.Namespace) -> int:
    if a.print_config:
        return print_config(a)
    if a.resume and (a.out or a.overwrite):
        raise ReparamError(f"--resume continues {a.resume} in place; --out and --overwrite do not apply to it")
    since = time.time()
    run_dir = continue_training(a) if a.resume else start_training(a)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the job
        return 0
    print("\n".join(closing(run_dir, since)))
    return 0


KEYS = "(the configuration keys)"


class TrainHelp(argparse.RawDescriptionHelpFormatter):
    """``train --help``: its epilog, ``KEYS``, becomes the list of configuration keys, read from
    the config's dataclasses only when the help is shown (not at every start of the command line)."""

    def add_text(self, text: str | None) -> None:
        from ..config_keys import keys_help

        super().add_text(keys_help(shutil.get_terminal_size().columns - 2) if text == KEYS else text)


def add_commands(sub) -> None:
    t = sub.add_parser(
        "train", help="train a VAE (digits by default)", formatter_class=TrainHelp, epilog=KEYS,
        description="Train a VAE: reparam train [CONFIG.toml] [key=value ...]; continue one: reparam train --resume RUN.",
    )  # fmt: skip
    t.add_argument("settings", nargs="*", help="an optional CONFIG.toml, then key=value overrides (the keys are listed below)")
    t.add_argument("--out", help="run folder (default: runs/<time>-<data>-<family>)")
    t.add_argument("--overwrite", action="store_true", help="reuse a folder that already holds a run")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no opening line")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its newest checkpoint (train.epochs=N or train.budget=T to extend)")
    t.add_argument("--print-config", action="store_true", help="print the resolved config (CONFIG.toml and overrides) as TOML and exit; trains nothing")
    t.set_defaults(func=cmd_train)
    add_sweep(sub)


def cmd_sweep(a: argparse.Namespace) -> int:
    from .sweep import TABLE_MD, sweep

    out = Path(a.out) if a.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-sweep"
    sweep(a.settings, a.trials, out, progress=not a.quiet)
    print((out / TABLE_MD).read_text(), end="")
    print(out)
    return 0


def add_sweep(sub) -> None:
    s = sub.add_parser(
        "sweep", help="search config keys on Optuna, selecting on the validation set (pip install 'reparam[sweep]')",
        description='Search config keys: reparam sweep [CONFIG.toml] key=value ... "train.lr=loguniform(1e-4,1e-2)" "latent.dim=int(2,16)" '
        '"latent.family=choice(gaussian,laplace)" "objective.beta=uniform(0.5,2)" --trials N --out DIR. Each trial is a run folder '
        "DIR/trial-NNN; each is scored by its kept validation metric (train.keep_best, elbo unless set; data.validation is required). "
        "The same command again continues the study to N trials in all.",
    )  # fmt: skip
    s.add_argument("settings", nargs="*", help="an optional CONFIG.toml, key=value overrides, and key=loguniform(a,b) | uniform(a,b) | int(a,b) | choice(x,y,...) to search")
    s.add_argument("--trials", type=int, required=True, help="trials in all (a continued sweep runs the ones it lacks)")
    s.add_argument("--out", help="sweep folder (default: runs/<time>-sweep)")
    s.add_argument("--quiet", action="store_true", help="no line per trial")
    s.set_defaults(func=cmd_sweep)
