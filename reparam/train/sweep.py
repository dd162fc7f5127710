"""``reparam sweep``: a search over config keys on Optuna, each trial a normal run, selected on validation.

``reparam sweep [CONFIG.toml] key=value ... "train.lr=loguniform(1e-4,1e-2)" --trials N --out DIR``:
a setting whose value is ``loguniform(a,b)``, ``uniform(a,b)``, ``int(a,b)`` or
``choice(x,y,...)`` is searched (``Dimension``), every other one is fixed. Each trial is a run
folder ``DIR/trial-000``, ... trained as ``reparam train`` trains one; its objective is the
validation metric of the weights it kept (``train.keep_best``, ``elbo`` unless set), so a
sweep needs ``data.validation`` and never reads a trial's test numbers. The study lives in
``DIR/study.log`` (Optuna's journal file): the same command again continues to N trials in
all, and a trial cut short is resumed from its checkpoint. ``DIR/trials.csv``,
``DIR/trials.md`` and ``DIR/trials.png`` hold the table and the plot of the trials.

Optuna is an optional extra (``pip install 'reparam[sweep]'``), imported only here.
"""

from __future__ import annotations

import csv
import io
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config as config_mod
from .. import runs
from ..errors import ConfigError, ReparamError, require

KINDS = ("loguniform", "uniform", "int", "choice")
STUDY, SETTINGS, TABLE_CSV, TABLE_MD, PLOT = "study.log", "sweep.json", "trials.csv", "trials.md", "trials.png"


@dataclass
class Dimension:
    """One searched key: ``key``, its ``kind`` (one of ``KINDS``) and its arguments as written."""

    key: str
    kind: str
    args: list[str]

    @property
    def text(self) -> str:
        return f"{self.key}={self.kind}({','.join(self.args)})"

    def distribution(self):
        """The Optuna distribution (a choice's values are kept as their text and parsed as an override's)."""
        import optuna

        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution(self.args)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(*self.bounds())
        return optuna.distributions.FloatDistribution(*self.bounds(), log=self.kind == "loguniform")

    def bounds(self) -> tuple:
        """(low, high), checked: two numbers, low < high (int: whole numbers, low <= high; loguniform: low > 0)."""
        require(len(self.args) == 2, f"{self.text}: {self.kind} takes two numbers, low and high")
        kind = int if self.kind == "int" else float
        try:
            low, high = (kind(config_mod.parse_value(a)) if kind is float else _whole(a) for a in self.args)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.text}: {self.kind} takes two {'whole ' if kind is int else ''}numbers, low and high") from None
        require(low < high or kind is int and low == high, f"{self.text}: low must be below high")
        require(self.kind != "loguniform" or low > 0, f"{self.text}: loguniform needs low > 0")
        return low, high

    def extremes(self) -> list[str]:
        """The values a trial can take at the ends of the range (every choice): each is checked as a setting before any trial."""
        if self.kind == "choice":
            require(len(self.args) >= 1 and all(self.args), f"{self.text}: choice takes one or more values")
            return self.args
        return [repr(v) for v in self.bounds()]

    def setting(self, value: Any) -> str:
        return f"{self.key}={value}"


def _whole(text: str) -> int:
    value = config_mod.parse_value(text)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(text)
    return value


def split_args(text: str) -> list[str]:
    """``a, [1, 2], "x,y"`` -> ``["a", "[1, 2]", '"x,y"']``: commas outside brackets and quotes."""
    out, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "[{(":
            depth += 1
        elif c in "]})":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    return [*out, text[start:].strip()] if text.strip() else []


def dimension(setting: str) -> Dimension | None:
    """``key=kind(args)`` as a Dimension; None for a plain ``key=value``."""
    key, _, value = setting.partition("=")
    match = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", value, re.S)
    if match is None or match.group(1) not in KINDS:
        return None
    return Dimension(key.strip(), match.group(1), split_args(match.group(2)))


def optuna_module():
    """Optuna, or one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ReparamError("reparam sweep needs Optuna: pip install 'reparam[sweep]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class Sweep:
    """A sweep's settings: the config file, the fixed overrides, the searched dimensions, the folder."""

    path: str | None
    fixed: list[str]
    space: list[Dimension]
    out: Path

    def raw(self, extra: Iterable[str] = ()) -> dict[str, Any]:
        """The config (file, fixed overrides, ``extra``) as nested dicts; ``train.keep_best`` is elbo unless given."""
        raw = config_mod.load_raw(self.path, [*self.fixed, *extra])
        train = raw.setdefault("train", {})
        if isinstance(train, dict) and not train.get("keep_best"):
            train["keep_best"] = "elbo"
        return raw

    def check(self):
        """The base config and every end of every range, validated before anything is written; returns the base Config."""
        from .members import expand

        require(bool(self.space), "reparam sweep needs at least one searched key, e.g. \"train.lr=loguniform(1e-4,1e-2)\"")
        keys = [d.key for d in self.space]
        both = sorted(set(keys) & {s.partition("=")[0].strip() for s in self.fixed}) or sorted({k for k in keys if keys.count(k) > 1})
        require(not both, f"{both[0] if both else ''} is searched and also set; give it once")
        raw = self.raw()
        require(expand(raw) is None, "a sweep's trials are single runs; drop the lists (seed=[...]) from the settings")
        data = raw.get("data")
        require(
            isinstance(data, dict) and bool(data.get("validation")),
            "reparam sweep selects on a validation set; set data.validation=N images or a fraction (e.g. data.validation=0.2)",
        )
        cfg = config_mod.from_dict(raw)
        for d in self.space:
            for value in d.extremes():
                try:
                    config_mod.from_dict(self.raw([d.setting(value)]))
                except ConfigError as e:
                    raise ConfigError(f"{d.text} at {value}: {e}") from None
        return cfg

    def record(self) -> dict[str, Any]:
        """What DIR/sweep.json holds, to recognise the same sweep when it is continued."""
        return {"config": self.raw(), "space": [d.text for d in self.space]}


def storage(out: Path):
    """The study's storage: Optuna's journal file ``DIR/study.log`` (appended to as trials start and end)."""
    import optuna

    journal = getattr(optuna.storages, "journal", None)
    if journal is not None and hasattr(journal, "JournalFileBackend"):  # Optuna 4 and later
        return optuna.storages.JournalStorage(journal.JournalFileBackend(str(out / STUDY)))
    return optuna.storages.JournalStorage(optuna.storages.JournalFileStorage(str(out / STUDY)))  # Optuna 3


def sweep(settings: Iterable[str], trials: int, out: str | Path, progress: bool = True) -> Path:
    """``reparam sweep`` in Python: ``settings`` as on the command line (an optional CONFIG.toml,
    ``key=value`` overrides, ``key=loguniform(a,b)`` and the like to search); returns the sweep folder.

    ``sweep(["data.validation=0.2", "train.lr=loguniform(1e-4,1e-2)", "latent.dim=int(2,32)"], 10, "runs/sweep")``
    """
    settings = list(settings)
    files = [s for s in settings if "=" not in s]
    require(len(files) <= 1, f"expected at most one config file and key=value settings, got {files}")
    space = [d for d in map(dimension, settings) if d is not None]
    fixed = [s for s in settings if "=" in s and dimension(s) is None]
    return run_sweep(Sweep(files[0] if files else None, fixed, space, Path(out)), trials, progress)


def trial_name(number: int) -> str:
    return f"trial-{number:03d}"


def run_sweep(sweep: Sweep, trials: int, progress: bool = True) -> Path:
    """Run (or continue) ``sweep`` until its study holds ``trials`` finished trials; writes the table and plot."""
    optuna = optuna_module()
    cfg = sweep.check()
    require(trials >= 1, f"--trials must be >= 1, got {trials}")
    metric, sign = cfg.train.keep_best, config_mod.SELECTABLE[cfg.train.keep_best]
    out = sweep.out
    saved = out / SETTINGS
    if saved.is_file():
        if runs.read_json(saved) != sweep.record():
            raise ConfigError(f"{out} holds another sweep (its {SETTINGS} differs); give the same settings to continue it, or choose another --out")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and holds no sweep; choose another --out")
    if progress:
        print(f"reparam: sweep of {', '.join(d.text for d in sweep.space)} for {trials} trials, selecting on validation {metric}; sweep folder {out}", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    runs.write_json(saved, sweep.record())
    study = optuna.create_study(storage=storage(out), study_name="reparam", direction="maximize" if sign > 0 else "minimize", load_if_exists=True)
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.trials))  # seeded by how far the study is: a continued one repeats itself
    distributions = {d.key: d.distribution() for d in sweep.space}
    for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):  # cut short last time: resumed from its checkpoint
        _tell(study, t.number, run_trial(sweep, t.number, t.params, progress), sweep, t.params, metric, progress, trials)
    while len(study.get_trials(states=finished_states(optuna))) < trials:
        trial = study.ask(distributions)
        _tell(study, trial.number, run_trial(sweep, trial.number, trial.params, progress), sweep, trial.params, metric, progress, trials)
    write_table(study, sweep, metric)
    return out


def finished_states(optuna) -> tuple:
    """The states a trial ends in; the sweep runs until --trials of them."""
    s = optuna.trial.TrialState
    return (s.COMPLETE, s.FAIL, s.PRUNED)


def run_trial(sweep: Sweep, number: int, params: dict[str, Any], progress: bool) -> tuple[float | None, str]:
    """Train (or resume) trial ``number`` in its run folder: (its kept validation metric, a note) or (None, the error)."""
    from .run import resume, train

    folder = sweep.out / trial_name(number)
    settings = [d.setting(params[d.key]) for d in sweep.space]
    try:
        if (folder / runs.CONFIG).is_file():
            resume(folder, progress=False)
        else:
            cfg = config_mod.from_dict(sweep.raw(settings))
            train(cfg, folder, overwrite=folder.exists(), progress=False)
    except ReparamError as e:  # a diverged trial, say: it fails, the sweep goes on
        return None, str(e)
    summary = runs.read_json(folder / runs.SUMMARY)
    return float(summary["kept"]["value"]), f"epoch {summary['kept']['epoch']}, stopped by {summary['stopped_by']}"


def _tell(study, number: int, result: tuple[float | None, str], sweep: Sweep, params: dict, metric: str, progress: bool, total: int) -> None:
    import optuna

    value, note = result
    if value is None or not math.isfinite(value):
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(number, value)
    if progress:
        shown = " ".join(d.setting(_fmt(params[d.key])) for d in sweep.space)
        result_text = f"validation {metric} {value:.4g} ({note})" if value is not None else f"failed: {note}"
        print(f"reparam: {trial_name(number)} ({number + 1}/{total}): {shown} -> {result_text}", file=sys.stderr, flush=True)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def rows(study, sweep: Sweep) -> list[dict[str, Any]]:
    """One row per trial: its number, state, value, kept epoch and parameters, its folder."""
    out = []
    for t in sorted(study.trials, key=lambda t: t.number):
        folder = sweep.out / trial_name(t.number)
        summary = runs.read_json(folder / runs.SUMMARY) if (folder / runs.SUMMARY).is_file() else {}
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name.lower(), "value": t.value}
        row["epoch"] = summary.get("kept", {}).get("epoch")
        row["stopped_by"] = summary.get("stopped_by")
        row.update({d.key: t.params.get(d.key) for d in sweep.space})
        row["folder"] = trial_name(t.number)
        out.append(row)
    return out


def write_table(study, sweep: Sweep, metric: str) -> None:
    """DIR/trials.csv, DIR/trials.md (the best trial marked) and DIR/trials.png."""
    table = rows(study, sweep)
    heads = ["trial", "state", f"val_{metric}", "kept epoch", "stopped by", *[d.key for d in sweep.space], "folder"]
    values = [[r["trial"], r["state"], r["value"], r["epoch"], r["stopped_by"], *[r[d.key] for d in sweep.space], r["folder"]] for r in table]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows([heads, *[["" if v is None else v for v in row] for row in values]])
    runs.atomic_write_bytes(sweep.out / TABLE_CSV, buf.getvalue().encode())
    done = [r for r in table if r["value"] is not None]
    best = None
    if done:
        best = (max if study.direction.name == "MAXIMIZE" else min)(done, key=lambda r: r["value"])["trial"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r, row in zip(table, values):
        cells = ["" if v is None else _fmt(v) for v in row]
        if r["trial"] == best:
            cells[0] += " (best)"
        lines.append("| " + " | ".join(cells) + " |")
    runs.atomic_write_bytes(sweep.out / TABLE_MD, ("\n".join(lines) + "\n").encode())
    runs.atomic_write_bytes(sweep.out / PLOT, plot(table, sweep, metric, study.direction.name == "MAXIMIZE"))


def plot(table: list[dict[str, Any]], sweep: Sweep, metric: str, maximize: bool) -> bytes:
    """The metric of each trial in order with the best so far, then the metric against each searched key."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from ..report.figures import png

    done = [r for r in table if r["value"] is not None]
    fig = Figure(figsize=(3.6 * (1 + len(sweep.space)), 3.0))
    axes = fig.subplots(1, 1 + len(sweep.space), squeeze=False, sharey=True).ravel()
    ax = axes[0]
    if done:
        xs, ys = [r["trial"] for r in done], [r["value"] for r in done]
        best = [(max if maximize else min)(ys[: i + 1]) for i in range(len(ys))]
        ax.plot(xs, ys, "o", color="C0", label="trial")
        ax.step(xs, best, where="post", color="C1", label="best so far")
        ax.legend(fontsize="small")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"validation {metric}")
    for ax, d in zip(axes[1:], sweep.space):
        if d.kind == "choice":
            xs = [d.args.index(r[d.key]) for r in done]
            ax.set_xticks(range(len(d.args)), d.args)
            ax.set_xlim(-0.5, len(d.args) - 0.5)
        else:
            xs = [r[d.key] for r in done]
        ax.plot(xs, [r["value"] for r in done], "o", color="C0")
        if d.kind == "loguniform":
            ax.set_xscale("log")
        ax.set_xlabel(d.key)
    for ax in axes:
        ax.grid(alpha=0.3)
    return png(fig)
