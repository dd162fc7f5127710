"""Training and resuming the members of a list (``members.py``): stacks where they can, one after another where not."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from .. import checkpoint, devices, distributed, runs
from ..model.stacked import stackable
from ..report.members import write_members_page
from . import members as mem
from . import run, tracking
from .loop import Trainer
from .run import _run, _setup, _trainer, extend, finished, resume, stop_on_signals, train, wrap_up, write_files
from .stacked import Stack


def train_many(settings: Sequence[str], out: str | Path, config_file: str | Path | None = None, overwrite: bool = False,
               progress: bool = True) -> Path:  # fmt: skip
    """Train what a config with lists describes, as ``reparam train`` does: ``train_many(["seed=[0,1,2]",
    "train.lr=[1e-3,3e-3]"], "runs/grid")`` trains six members into ``runs/grid`` (``members.py``).
    A config without lists trains one run there. Returns the folder."""
    from .. import config

    raw = config.load_raw(config_file, settings)
    listed = mem.expand(raw)
    if listed is None:
        return train(config.from_dict(raw), out, overwrite=overwrite, progress=progress)
    return train_members(listed, mem.grid_keys(raw), out, overwrite=overwrite, progress=progress)


def train_members(members: list[mem.Member], keys: list[str], out: str | Path, overwrite: bool = False, progress: bool = True,
                  read_every: int = 0) -> Path:  # fmt: skip
    """Train every member into ``out/<member>``; ``out/summary.json`` holds each setting's means and SEs over seeds."""
    main = distributed.from_env().is_main  # under torchrun rank 0 writes the ensemble's own files
    out = mem.prepare(Path(out), overwrite) if main else Path(out)
    if main:
        mem.write_members(out, members, keys)
    with distributed.one_group():
        for group in mem.groups(members):
            run_group(group, out, progress, read_every=read_every)
    return close(out, members) if main else out


def resume_any(run_dir: str | Path, epochs: int | None = None, hooks=(), progress: bool | None = None, budget: str | float | None = None,
               opening: str | None = None, data=None) -> Path:  # fmt: skip
    """``reparam.train.resume``: a run folder continues as ``run.resume`` continues it (``data``: images
    given in Python, again); an ensemble's folder (``members.json``) continues every member (``resume_members``)."""
    if (Path(run_dir) / runs.MEMBERS).is_file():
        if data is not None:
            raise ValueError(f"{run_dir} holds several runs, which read their data from their config; data= applies to a run trained with it")
        if hooks:
            raise ValueError(f"{run_dir} holds several runs; hooks apply to one run: resume a member, e.g. {Path(run_dir) / mem.read_members(Path(run_dir))[0].name}")
        if opening:
            print(f"reparam: {opening}", file=sys.stderr, flush=True)
        return resume_members(run_dir, epochs, budget, progress=True if progress is None else progress)
    return resume(run_dir, epochs, hooks, progress, budget, opening, data)


def resume_members(out: str | Path, epochs: int | None = None, budget: str | float | None = None, progress: bool = True) -> Path:
    """Continue every member of an ensemble from the newest step all of its stack reached (bit for bit)."""
    out = Path(out)
    members = mem.read_members(out)
    with distributed.one_group():
        trained = [run_group(group, out, progress, resuming=True, epochs=epochs, budget=budget) for group in mem.groups(members)]
    if not distributed.from_env().is_main:
        return out
    if not any(trained) and (out / runs.SUMMARY).is_file():
        print(f"reparam: every member of {out} already finished; nothing was rewritten. To train longer: reparam train --resume {out} "
              f"train.epochs=N; to evaluate one: reparam eval {out / members[0].name}", file=sys.stderr)  # fmt: skip
        return out
    return close(out, members)


def close(out: Path, members: list[mem.Member]) -> Path:
    summary = mem.aggregate(out, members)
    runs.write_json(out / runs.SUMMARY, summary)
    if members[0].cfg.train.report:
        write_members_page(out, [m.name for m in members], summary, seed=members[0].cfg.seed)
    return out


def run_group(group: list[mem.Member], out: Path, progress: bool, resuming: bool = False, epochs=None, budget=None, read_every: int = 0) -> bool:
    """One stack's members: as one where ``solo_reason`` and ``stackable`` allow, else one after
    another. False when resuming found every member finished (nothing trained)."""
    reason = mem.solo_reason(group[0].cfg) if len(group) > 1 else None
    if reason is not None:
        mem.say(f"{', '.join(m.name for m in group)} train one after another: {reason}", True)
        trained = False
        for m in group:
            folder = out / m.name
            if resuming and (folder / runs.CONFIG).is_file():
                state = checkpoint.latest_state(folder) if checkpoint.list_checkpoints(folder) else None
                trained |= state is None or not done(m, state, epochs, budget, out)
                resume(folder, epochs, progress=progress, budget=budget)
            else:
                trained = True
                train(m.cfg, folder, overwrite=True, progress=progress)
        return trained
    states = common_states([out / m.name for m in group]) if resuming else None
    if resuming and states is not None and all(done(m, s, epochs, budget, out) for m, s in zip(group, states)):
        return False
    stack_group(group, out, progress, states, epochs, budget, read_every)
    return True


def done(m: mem.Member, state: dict, epochs, budget, out: Path) -> bool:
    extend(m.cfg, epochs, budget, state["meta"]["epoch"])
    return finished(m.cfg, state["meta"]) and (out / m.name / runs.SUMMARY).is_file()


def common_states(folders: list[Path]) -> list[dict] | None:
    """Each member's checkpoint at the newest step every member has one for (newer ones, written
    by a run killed between two members' checkpoints, are removed); None if there is none."""
    steps = [{int(p.stem.split("-")[1]): p for p in checkpoint.list_checkpoints(f)} if f.is_dir() else {} for f in folders]
    common = set.intersection(*(set(s) for s in steps))
    if not common:
        return None
    step = max(common)
    for s in steps:
        for later in [p for k, p in s.items() if k > step]:
            later.unlink()
    return [checkpoint.load(s[step]) for s in steps]


def capture(device: torch.device) -> tuple[torch.Tensor, ...]:
    """The global generators' states (CPU, and the device's on CUDA): a member's noise as it stands."""
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return tuple(states)


def restore_noise(states: tuple[torch.Tensor, ...], device: torch.device) -> None:
    """The inverse of ``capture``."""
    torch.set_rng_state(states[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states[1], device)


def make_trainers(group: list[mem.Member], out: Path, states: list[dict] | None, sessions: contextlib.ExitStack, epochs=None,
                  budget=None) -> tuple[list[Trainer], list[tuple[torch.Tensor, ...]]]:  # fmt: skip
    """Each member built as ``train`` (or, from ``states``, ``resume``) builds it, in its folder under
    ``out``, with the state of its noise after building (``capture``); the members share one copy of the data."""
    trainers, rng, data = [], [], None
    devices.set_threads(group[0].cfg.train.threads, fresh=True)
    for i, m in enumerate(group):
        folder, cfg = out / m.name, m.cfg
        if states is not None:
            extend(cfg, epochs, budget, states[i]["meta"]["epoch"])
        tracking.check(cfg.train.log)
        columns = runs.read_columns(folder, cfg) if states is not None and data is None else None
        data, model, dist = _setup(cfg, columns=columns, data=data)
        runs.prepare_run_dir(folder, overwrite=True)
        write_files(folder, cfg, data)
        trackers = sessions.enter_context(tracking.session(cfg.train.log, cfg.to_dict(), folder))
        t = _trainer(cfg, model, data, folder, trackers, dist)
        if states is not None:
            run.restore(t, states[i])
        if cfg.train.keep_checkpoints < 2:
            t.warn("train.keep_checkpoints=1 keeps 2 in a stack: a run killed between two members' checkpoints resumes from the older")
            cfg.train.keep_checkpoints = 2
        rng.append(capture(t.device))
        trainers.append(t)
    return trainers, rng


def stack_group(group: list[mem.Member], out: Path, progress: bool, states: list[dict] | None, epochs, budget, read_every: int) -> None:
    """Build each member (``make_trainers``), then train them as one ``Stack`` (one after another where ``stackable`` says no)."""
    with contextlib.ExitStack() as sessions:
        trainers, rng = make_trainers(group, out, states, sessions, epochs, budget)
        reason = stackable([t.model for t in trainers]) if len(trainers) > 1 else "one member"
        if reason is not None:
            mem.say(f"{', '.join(m.name for m in group)} train one after another: {reason}", len(trainers) > 1)
            for t, state in zip(trainers, rng):
                restore_noise(state, t.device)
                _run(t, progress)
            return
        mem.say(f"{', '.join(m.name for m in group)} train as one stack", progress)
        stack = Stack(trainers, rng, read_every)
        with stop_on_signals(stack):
            stack.fit(progress)
        for m, t in enumerate(trainers):
            with stack.member(m):
                wrap_up(t, progress)
