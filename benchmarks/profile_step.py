"""Where a training step's time goes, and how far it is from its matrix-multiplication floor.

    python benchmarks/profile_step.py [--steps 200] [--rounds 5] [--threads 2]

The step: the trainer's own (batching, dynamic binarization, forward, backward, gradient
check, Adam) for the IWAE paper's one-layer MLP (784-200-200-50, tanh, Gaussian latent,
Bernoulli likelihood) at batch 100 on MNIST. ``torch.profiler`` records ``--steps`` steps;
the table sums the operators' self CPU time by kind (matrix multiplications, elementwise and
reductions, the optimizer, random numbers and indexing), and what is left of the wall time is
Python and dispatch. The floor: the same matrix multiplications (forward, and the two
products of each layer's backward) timed alone in a loop, against the whole step; the two
alternate over ``--rounds`` rounds and the ratio is taken within each round, since on a shared
host both drift by tens of percent from minute to minute.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.scale import MLP, mlp_trainer, step  # noqa: E402
from reparam import config  # noqa: E402
from reparam import data as data_mod  # noqa: E402

KINDS = {
    "matrix multiplications": ("addmm", "mm", "bmm", "linear", "matmul"),
    "optimizer (Adam)": ("_foreach", "adam", "lerp", "addcdiv", "addcmul"),
    "random numbers and indexing": ("rand", "normal", "bernoulli", "index_select", "randperm", "lt_", "uniform"),
}
LAYERS = [(784, 200), (200, 200), (200, 100), (50, 200), (200, 200), (200, 784)]  # encoder to 2 x 50, decoder back


def kind(name: str) -> str:
    low = name.lower()
    for k, keys in KINDS.items():
        if any(key in low for key in keys):
            return k
    return "elementwise, reductions and the rest"


def floor_seconds(batch: int, reps: int) -> float:
    """Seconds per step of the step's matrix products alone: each layer forward (B x in @ in x out)
    and backward (the input gradient and the weight gradient)."""
    mats = [(torch.randn(batch, i), torch.randn(i, o), torch.randn(batch, o)) for i, o in LAYERS]

    def once() -> None:
        for x, w, g in mats:
            x @ w
            g @ w.T
            x.T @ g

    for _ in range(10):
        once()
    start = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - start) / reps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t = mlp_trainer(data_mod.load(config.load(None, [*MLP, f"data.path={common.MNIST}"]).data), "train.batch_size=100", prefix="reparam-profile-")
    load0 = os.getloadavg()[0]

    for _ in range(20):
        step(t)
    steps, floors = [], []
    for _ in range(a.rounds):  # step and floor alternate, so that a drifting host hits both alike
        start = time.perf_counter()
        for _ in range(a.steps):
            step(t)
        steps.append((time.perf_counter() - start) / a.steps)
        floors.append(floor_seconds(100, 500))
    ratios = [f / s for f, s in zip(floors, steps)]
    plain, floor, ratio = statistics.median(steps), statistics.median(floors), statistics.median(ratios)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(a.steps):
            step(t)
        wall = time.perf_counter() - start
    sums: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        sums[kind(ev.key)] += ev.self_cpu_time_total / 1e6
    ops = sum(sums.values())
    rows = [f"| {k} | {1000 * v / a.steps:.3f} | {v / wall:.0%} |" for k, v in sorted(sums.items(), key=lambda kv: -kv[1])]
    rows.append(f"| Python, dispatch and the profiler (wall minus operators) | {1000 * max(0.0, wall - ops) / a.steps:.3f} | {max(0.0, wall - ops) / wall:.0%} |")
    body = f"""Command: `python benchmarks/profile_step.py --steps {a.steps} --rounds {a.rounds} --threads {a.threads}`. The trainer's step for the
784-200-200-50 tanh MLP, batch 100, dynamically binarized MNIST, {a.threads} thread(s). {common.machine_state(load0, os.getloadavg()[0])}

Without the profiler: {1000 * plain:.3f} ms per step ({100 / plain:,.0f} images/s), the median of {a.rounds} rounds. Its matrix
products alone (each layer's forward and both backward products, the same shapes), timed between the rounds: {1000 * floor:.3f} ms.
The step runs at {ratio:.0%} of its matrix-multiplication floor (median of the rounds' ratios; rounds:
{", ".join(f"{r:.0%}" for r in ratios)}; steps {", ".join(f"{1000 * v:.2f}" for v in steps)} ms; floors {", ".join(f"{1000 * v:.2f}" for v in floors)} ms). Under the profiler ({1000 * wall / a.steps:.3f} ms per step), operators' self time by kind:

| where | ms per step | share of the profiled wall time |
|---|---:|---:|
{chr(10).join(rows)}
"""
    common.publish("profile_step", body, write=not a.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
