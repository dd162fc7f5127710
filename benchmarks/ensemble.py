"""Members trained as one stack against the same runs one after another: images/s, memory, equivalence.

Three measurements, each written to BENCHMARKS.md ("ensemble"):

1. The step (what the speed goal counts): the IWAE paper's MLP (784-200-200-50, tanh, dynamically
   binarized MNIST, batch 100, ELBO), a stack of M members against one member alone, in child
   processes (one per configuration and round, rounds interleaved), each timing whole steps as
   the trainer takes them (its batches, binarization, noise, Adam) after a warm-up; images/s
   counts every member's images; peak RSS of each child.
2. Where a step's time goes (one profile per configuration): matrix products, the rest.
3. The command a user runs: ``reparam train seed=[0,..,M-1]`` on the bundled digits with its
   defaults against M ``reparam train seed=s`` one after another (wall time, interleaved), and
   each member's test ELBO and NLL against its solo run's (the NLL's per-image SE beside).

    python benchmarks/ensemble.py                       # the CPU rows, 2 threads
    python benchmarks/ensemble.py --device cuda --members 1,8,64,256 --batch-sizes 20,100 --precisions fp32,bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

#: The models timed: the IWAE paper's MLP on MNIST (the speed goal's), and the bundled default (digits, its defaults).
MODELS = {
    "iwae": ["data.name=mnist", f"data.path={common.MNIST}", "data.binarize=dynamic", "latent.dim=50", "model.hidden=[200,200]",
             "model.activation=tanh"],
    "digits": [],
}  # fmt: skip
#: Multiply-adds of one forward pass per image (backward: twice that), for the fraction of a device's peak.
MACS = {"iwae": 784 * 200 + 200 * 200 + 200 * 100 + 50 * 200 + 200 * 200 + 200 * 784, "digits": 64 * 256 + 256 * 128 + 128 * 16 + 8 * 128 + 128 * 256 + 256 * 64}


def child(model: str, members: int, batch: int, steps: int, device: str, precision: str, threads: int) -> dict:
    """Build ``members`` trainers as ``reparam train seed=[...]`` does, time ``steps`` stacked steps
    (one member: its own trainer's steps, as ``reparam train`` takes them alone)."""
    import resource

    import torch

    from reparam import config
    from reparam.train import members as mem
    from reparam.train.ensemble import make_trainers
    from reparam.train.stacked import Stack

    torch.set_num_threads(threads)
    seeds = f"seed=[{','.join(map(str, range(members)))}]"
    raw = config.load_raw(None, [*MODELS[model], "train.progress=false", f"train.batch_size={batch}", f"train.device={device}",
                                 f"train.precision={precision}", f"train.threads={threads}", seeds])  # fmt: skip
    listed = mem.expand(raw)
    import contextlib

    with contextlib.ExitStack() as sessions:
        trainers, rng = make_trainers(listed, Path(tempfile.mkdtemp(prefix="reparam-ens-")), None, sessions)
    stack = Stack(trainers, rng) if members > 1 else None
    for t in trainers:
        t.model.train()

    def step():
        out = stack.train_step() if stack is not None else trainers[0].train_step(trainers[0].batches.next())
        for t in trainers:  # an epoch's end: a new order (the held-out evaluation is not timed)
            if t.batches.epoch_done():
                t.batches.next_epoch()
        return out

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(max(5, steps // 10)):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    rate = members * batch * steps / seconds
    return {"model": model, "members": members, "batch": batch, "precision": precision, "step_ms": 1e3 * seconds / steps,
            "images_per_s": rate, "peak_mb": peak, "tflops": 6 * MACS[model] * rate / 1e12}  # fmt: skip


def profile_split(model: str, members: int, batch: int, threads: int) -> dict:
    """One profiled configuration: milliseconds per step in matrix products and in everything else."""
    import contextlib

    import torch
    from torch.profiler import profile

    from reparam import config
    from reparam.train import members as mem
    from reparam.train.ensemble import make_trainers
    from reparam.train.stacked import Stack

    torch.set_num_threads(threads)
    raw = config.load_raw(None, [*MODELS[model], f"train.batch_size={batch}", f"seed=[{','.join(map(str, range(members)))}]"])
    with contextlib.ExitStack() as sessions:
        trainers, rng = make_trainers(mem.expand(raw), Path(tempfile.mkdtemp(prefix="reparam-ens-")), None, sessions)
    stack, t = Stack(trainers, rng) if members > 1 else None, trainers[0]

    def step():
        out = stack.train_step() if stack is not None else t.train_step(t.batches.next())
        for each in trainers:
            if each.batches.epoch_done():
                each.batches.next_epoch()
        return out

    for _ in range(10):
        step()
    with profile() as prof:
        for _ in range(20):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 20 / 1e3
    matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")) / 20 / 1e3
    top = sorted((e for e in events if e.key not in ("aten::mm", "aten::addmm", "aten::bmm")), key=lambda e: -e.self_cpu_time_total)[:4]
    return {"model": model, "members": members, "total_ms": total, "matmul_ms": matmul, "top": [(e.key, e.self_cpu_time_total / 20 / 1e3) for e in top]}


def run_child(*args: str) -> dict:
    proc = common.run_process([sys.executable, __file__, "--child", *args])
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def step_rows(a) -> list[dict]:
    rows: dict[tuple, list[dict]] = {}
    configs = [(n, m, b, p) for n in a.models.split(",") for p in a.precisions.split(",") for b in map(int, a.batch_sizes.split(","))
               for m in map(int, a.members.split(","))]  # fmt: skip
    for r in range(a.rounds):
        for n, m, b, p in configs:
            got = run_child(n, str(m), str(b), str(a.steps), a.device, p, str(a.threads))
            rows.setdefault((n, m, b, p), []).append(got)
            print(f"round {r + 1}: {n}, {m} members, batch {b}, {p}: {got['images_per_s']:,.0f} images/s", file=sys.stderr, flush=True)
    out = []
    for (n, m, b, p), got in rows.items():
        solo = statistics.median(g["images_per_s"] for g in rows[(n, 1, b, p)]) if (n, 1, b, p) in rows else None
        rate = statistics.median(g["images_per_s"] for g in got)
        out.append({"model": n, "members": m, "batch": b, "precision": p, "images_per_s": rate, "rounds": [g["images_per_s"] for g in got],
                    "speedup": rate / solo if solo else None, "peak_mb": max(g["peak_mb"] for g in got),
                    "step_ms": statistics.median(g["step_ms"] for g in got), "tflops": statistics.median(g["tflops"] for g in got)})  # fmt: skip
    return out


def command_rows(members: int, rounds: int) -> dict:
    """``reparam train seed=[...]`` on digits (its defaults) against the same runs one after another."""
    tmp = Path(tempfile.mkdtemp(prefix="reparam-ens-cmd-"))
    seeds = f"seed=[{','.join(map(str, range(members)))}]"
    stacked, alone = [], []
    for r in range(rounds):
        proc = common.run_process([sys.executable, "-m", "reparam", "train", seeds, "--quiet", "--out", str(tmp / f"stack{r}")], cwd=common.ROOT)
        assert proc.returncode == 0, proc.stderr
        stacked.append(proc.seconds)
        total = 0.0
        for s in range(members):
            one = common.run_process([sys.executable, "-m", "reparam", "train", f"seed={s}", "--quiet", "--out", str(tmp / f"alone{r}-{s}")], cwd=common.ROOT)
            assert one.returncode == 0, one.stderr
            total += one.seconds
        alone.append(total)
    pairs = []
    for s in range(members):
        a = json.loads((tmp / "stack0" / f"seed-{s}" / "summary.json").read_text())
        b = json.loads((tmp / f"alone0-{s}" / "summary.json").read_text())
        pairs.append({"seed": s, "elbo": a["elbo"], "elbo_alone": b["elbo"], "nll": a["nll"], "nll_alone": b["nll"], "nll_se": b["nll_se"]})
    over = json.loads((tmp / "stack0" / "summary.json").read_text())["settings"][0]["metrics"]
    return {"stacked": stacked, "alone": alone, "pairs": pairs, "over": over, "members": members}


def markdown(rows: list[dict], split: list[dict], cmd: dict | None, a, load: tuple[float, float]) -> str:
    lines = [
        "Members trained as one stack (`seed=[...]`; `reparam.train.stacked`) against one run alone (its own trainer): `iwae` is the "
        "IWAE paper's MLP (784-200-200-50, tanh) on dynamically binarized MNIST, `digits` the bundled default (64-256-128-8 "
        "on scikit-learn's digits); the ELBO, Adam; whole steps as the trainer takes them "
        f"(its batches and binarization, each member's noise and fused Adam), {a.steps} steps after a warm-up, median of "
        f"{a.rounds} interleaved rounds, each configuration in its own process ({a.threads} threads, device {a.device}). "
        "Speed-up: the stack's images/s over one member's, i.e. over the same runs one after another. " + common.machine_state(*load),
        "",
        "| model | members | batch | precision | images/s (median) | rounds | step (ms) | speed-up | TFLOP/s | peak memory (MB) |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        speed = "1 (alone)" if r["members"] == 1 else (f"{r['speedup']:.2f}x" if r["speedup"] else "-")
        rounds = " / ".join(f"{v:,.0f}" for v in r["rounds"])
        lines.append(f"| {r['model']} | {r['members']} | {r['batch']} | {r['precision']} | {r['images_per_s']:,.0f} | {rounds} | {r['step_ms']:.2f} | "
                     f"{speed} | {r['tflops']:.3f} | {r['peak_mb']:,.0f} |")  # fmt: skip
    if split:
        lines += ["", "Where a step's time goes (torch.profiler, self time per step, 20 steps; per member = total / members):", "",
                  "| model | members | total ms | per member | matrix products | per member | the rest, per member | largest others (ms per step) |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for s in split:
            m = s["members"]
            others = ", ".join(f"{k.removeprefix('aten::')} {v:.2f}" for k, v in s["top"])
            lines.append(f"| {s['model']} | {m} | {s['total_ms']:.2f} | {s['total_ms'] / m:.2f} | {s['matmul_ms']:.2f} | {s['matmul_ms'] / m:.2f} | "
                         f"{(s['total_ms'] - s['matmul_ms']) / m:.2f} | {others} |")  # fmt: skip
    if cmd:
        m = cmd["members"]
        st, al = statistics.median(cmd["stacked"]), statistics.median(cmd["alone"])
        lines += ["", f"The whole command on the bundled digits with its defaults: `reparam train seed=[0,...,{m - 1}]` against "
                  f"{m} runs `reparam train seed=s` one after another (wall seconds, each process's start included; "
                  f"{len(cmd['stacked'])} interleaved rounds): **{st:.1f} s against {al:.1f} s ({al / st:.2f}x)**; rounds "
                  + ", ".join(f"{x:.1f} / {y:.1f}" for x, y in zip(cmd["stacked"], cmd["alone"])) + ".", "",
                  "Each member against its solo run (the same seed alone), first round:", "",
                  "| seed | test ELBO, stacked | alone | NLL, stacked | alone | NLL per-image SE |", "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for p in cmd["pairs"]:
            lines.append(f"| {p['seed']} | {p['elbo']:.3f} | {p['elbo_alone']:.3f} | {p['nll']:.3f} | {p['nll_alone']:.3f} | {p['nll_se']:.2f} |")
        e, n = cmd["over"]["elbo"], cmd["over"]["nll"]
        lines += ["", f"Over the {m} seeds (`summary.json`): test ELBO {e['mean']:.2f} ± {e['se']:.2f}, NLL {n['mean']:.2f} ± {n['se']:.2f} "
                  f"(mean ± SE over seeds; per-image SE {n['image_se']:.2f})."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", nargs=7, metavar=("MODEL", "M", "B", "STEPS", "DEVICE", "PRECISION", "THREADS"), help=argparse.SUPPRESS)
    p.add_argument("--models", default="iwae,digits", help=f"of {', '.join(MODELS)}")
    p.add_argument("--members", default="1,4,8")
    p.add_argument("--batch-sizes", default="100")
    p.add_argument("--precisions", default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--command-members", type=int, default=4, help="members of the whole-command comparison (0: skip it)")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    a = p.parse_args(argv)
    if a.child:
        model, m, b, steps, device, precision, threads = a.child
        print(json.dumps(child(model, int(m), int(b), int(steps), device, precision, int(threads))))
        return 0
    os.environ.setdefault("REPARAM_MNIST", str(common.MNIST))
    load0 = common.load_average()
    rows = step_rows(a)
    first = int(a.batch_sizes.split(",")[0])
    split = [] if a.no_profile or a.device != "cpu" else [profile_split(n, m, first, a.threads) for n in a.models.split(",") for m in map(int, a.members.split(","))]
    cmd = command_rows(a.command_members, 2) if a.command_members else None
    md = markdown(rows, split, cmd, a, (load0, common.load_average()))
    name = "ensemble" if a.device == "cpu" else "ensemble_gpu"
    common.publish(name, md, write=not a.no_write, script="ensemble")
    return 0


if __name__ == "__main__":
    sys.exit(main())
