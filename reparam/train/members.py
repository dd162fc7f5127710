"""Many runs from one command: ``seed=[0,1,2,3]`` (and a list over one other key) trains members.

A list where a key takes one value (``seed=[0,1,2]``, ``train.lr=[1e-3,2e-3]``; for a key
that takes a list, a list of lists: ``model.hidden=[[200],[400]]``) makes one member per
value, crossed with the seeds. The run folder then holds one complete run folder per member
(``OUT/seed-0``, ``OUT/lr-0.001-seed-0``: ``eval``, ``sample``, ``report`` and ``explore``
read each as any run), ``members.json`` (which members, with which settings) and, once they
are trained, ``summary.json``: each setting's metrics as the mean and standard error over
its seeds (beside the mean of the per-image standard errors), and ``report.html`` (``report.members``).

Members whose networks have the same shapes train together, one step for all
(``stacked.Stack``); the seed, ``train.lr`` and ``objective.beta`` may differ between them.
Where a feature cannot be stacked (``solo_reason``), the members train one after another,
each exactly as ``reparam train`` trains one run.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config as config_mod
from .. import distributed, runs
from ..errors import ConfigError, RunError

MEMBERS = runs.MEMBERS
#: Keys that may differ between the members of one stack (everything else must agree).
PER_MEMBER = (("seed",), ("train", "lr"), ("objective", "beta"))


@dataclass
class Member:
    """One run of a list: its folder's name, the settings that single it out, its config."""

    name: str
    settings: dict[str, Any]
    cfg: Any  # a validated reparam.config.Config


def _field_is_list(section: str, key: str) -> bool:
    cls = config_mod.SECTIONS.get(section)
    hints = typing.get_type_hints(cls) if cls is not None else {}
    tp = hints.get(key)
    return tp is not None and list in (typing.get_origin(tp), *map(typing.get_origin, typing.get_args(tp)))


def grid_keys(raw: dict[str, Any]) -> list[str]:
    """The keys of ``raw`` given as a list of values (the seed last)."""
    found = []
    for section, values in raw.items():
        if section == "seed" or not isinstance(values, dict):
            continue
        for key, value in values.items():
            listed = isinstance(value, list) and (not _field_is_list(section, key) or any(isinstance(v, list) for v in value))
            if listed:
                found.append(f"{section}.{key}")
    return found + (["seed"] if isinstance(raw.get("seed"), list) else [])


def _get(raw: dict[str, Any], key: str) -> Any:
    section, _, name = key.partition(".")
    return raw[section] if not name else raw[section][name]


def _with(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    section, _, name = key.partition(".")
    return {**raw, key: value} if not name else {**raw, section: {**raw[section], name: value}}


def folder_name(settings: dict[str, Any]) -> str:
    """``lr-0.001-seed-0``: each setting's last key part and its value, in characters any file system takes."""
    parts = []
    for key, value in settings.items():
        text = "x".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key.rpartition('.')[2]}-{re.sub(r'[^A-Za-z0-9.+_-]', '_', text)}")
    return "-".join(parts)


def expand(raw: dict[str, Any]) -> list[Member] | None:
    """The members of a config with lists (None without any), each config validated: a bad value
    is one line before anything is written. ConfigError for lists over two keys besides the
    seed, an empty list, or a value given twice."""
    keys = grid_keys(raw)
    if not keys:
        return None
    others = [k for k in keys if k != "seed"]
    if len(others) > 1:
        raise ConfigError(f"lists over {others[0]} and {others[1]}: a grid is a list over one key, crossed with seed=[...]; give the other one value")
    lists = []
    for key in keys:
        values = _get(raw, key)
        if not values:
            raise ConfigError(f"{key}=[] lists no value; give at least one")
        repeated = [v for i, v in enumerate(values) if v in values[:i]]
        if repeated:
            raise ConfigError(f"{key} lists {repeated[0]!r} twice; give each value once")
        lists.append(values)
    members = []
    for combo in itertools.product(*lists):
        member_raw, settings = raw, dict(zip(keys, combo))
        for key, value in settings.items():
            member_raw = _with(member_raw, key, value)
        members.append(Member(folder_name(settings), settings, config_mod.from_dict(member_raw)))
    return members


def stack_key(cfg) -> str:
    """What members must share to train as one stack: the config without the keys that may differ."""
    d = cfg.to_dict()
    for path in PER_MEMBER:
        section = d
        for part in path[:-1]:
            section = section[part]
        section.pop(path[-1])
    return json.dumps(d, sort_keys=True, default=str)


def solo_reason(cfg) -> str | None:
    """Why members of this config train one after another instead of as one stack (None: they stack)."""
    reasons = [
        (distributed.from_env().enabled, "under torchrun each member trains on every process in turn"),
        (cfg.model.condition != "none", "labels (model.condition=label)"),
        (bool(cfg.model.stochastic), "stochastic layers (model.stochastic)"),
        (cfg.latent.flow != "none", f"a flow (latent.flow={cfg.latent.flow})"),
        (cfg.prior.name != "standard", f"a learned prior (prior.name={cfg.prior.name})"),
        (cfg.objective.free_bits > 0, "free bits (objective.free_bits)"),
        ((cfg.objective.estimator, cfg.objective.baseline) != ("auto", "none"), "a named estimator or baseline (objective.estimator, objective.baseline)"),
        (cfg.train.precision == "fp16", "train.precision=fp16 (a loss scale per member)"),
        (bool(cfg.train.compile), "train.compile"),
        (cfg.train.gradvar_every > 0, "train.gradvar_every"),
        (bool(cfg.train.keep_best), "train.keep_best (each member keeps and stops on its own)"),
    ]
    return next((why for cond, why in reasons if cond), None)


def groups(members: list[Member]) -> list[list[Member]]:
    """Members in stacks: those with the same ``stack_key``, in the order they were listed."""
    out: dict[str, list[Member]] = {}
    for m in members:
        out.setdefault(stack_key(m.cfg), []).append(m)
    return list(out.values())


def write_members(out: Path, members: list[Member], keys: list[str]) -> None:
    runs.write_json(out / MEMBERS, {"keys": keys, "members": [{"name": m.name, "settings": m.settings} for m in members]})


def read_members(out: Path) -> list[Member]:
    """The members of an ensemble folder, each with its config.json (RunError if one is missing)."""
    listed = json.loads((out / MEMBERS).read_text())["members"]
    members = []
    for item in listed:
        folder = out / item["name"]
        if not (folder / runs.CONFIG).is_file():
            raise RunError(f"{folder} lacks its config.json; the ensemble {out} cannot be resumed (start it again with --overwrite)")
        members.append(Member(item["name"], item["settings"], runs.read_config(folder)))
    return members


def is_ensemble(path: Path) -> bool:
    return (Path(path) / MEMBERS).is_file()


def prepare(out: Path, overwrite: bool) -> Path:
    """The ensemble's folder: refuses one that holds a run or an ensemble unless ``overwrite``."""
    if (is_ensemble(out) or (out / runs.CONFIG).exists()) and not overwrite:
        raise RunError(f"{out} already holds a run; continue it with: reparam train --resume {out}, or choose another --out, or pass --overwrite")
    return runs.prepare_run_dir(out, overwrite=True)


# --- the summary over seeds -----------------------------------------------------------------
def _numbers(summary: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def aggregate(out: Path, members: list[Member]) -> dict[str, Any]:
    """``summary.json`` of an ensemble: per setting (the members that differ only by seed), each
    metric's values, mean and standard error over the seeds (None with one seed); a metric with
    a per-image SE (``nll_se``) also gets that SE's mean as ``<metric>_image_se``."""
    rows: dict[str, dict[str, Any]] = {}
    for m in members:
        setting = {k: v for k, v in m.settings.items() if k != "seed"}
        label = json.dumps(setting, sort_keys=True)
        row = rows.setdefault(label, {"setting": setting, "members": [], "seeds": [], "metrics": {}})
        summary = json.loads((out / m.name / runs.SUMMARY).read_text())
        row["members"].append(m.name)
        row["seeds"].append(m.cfg.seed)
        for key, value in _numbers(summary).items():
            row["metrics"].setdefault(key, []).append(value)
    table = []
    for row in rows.values():
        n = len(row["members"])
        metrics = {}
        for key, values in row["metrics"].items():
            if len(values) != n:
                continue  # not every member reports it
            mean = sum(values) / n
            se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else None
            metrics[key] = {"mean": mean, "se": se, "values": values}
        for key in [k for k in metrics if k.endswith("_se") and k[:-3] in metrics]:
            metrics[key[:-3]]["image_se"] = metrics.pop(key)["mean"]
        table.append({"setting": row["setting"], "members": row["members"], "seeds": row["seeds"], "metrics": metrics})
    return {"members": len(members), "settings": table}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """What ``reparam train`` says of an ensemble: per setting, the test ELBO and NLL as mean ± SE over seeds."""
    lines = []
    for row in summary["settings"]:
        head = ", ".join(f"{k}={v}" for k, v in row["setting"].items())
        parts = []
        for key, name in (("elbo", "test ELBO"), ("nll", "NLL")):
            if key in row["metrics"]:
                v = row["metrics"][key]
                se = "" if v["se"] is None else f" ± {v['se']:.2f}"
                image = f" (per-image SE {v['image_se']:.2f})" if v.get("image_se") is not None else ""
                parts.append(f"{name} {v['mean']:.2f}{se}{image}")
        seeds = f"{len(row['seeds'])} seed{'s' if len(row['seeds']) != 1 else ''}"
        lines.append(f"{head + ': ' if head else ''}{', '.join(parts)} nats, mean ± SE over {seeds}")
    return lines


def say(text: str, progress: bool) -> None:
    if progress:
        print(f"reparam: {text}", file=sys.stderr, flush=True)

