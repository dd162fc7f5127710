"""A training epoch with and without a busy neighbour process, by thread setting.

    python benchmarks/contention.py [--rounds 3] [--settings auto,1,2] [--arch mlp,conv] [--quick]

Each cell is one ``reparam train`` process (``train.epochs=2``, no final log-likelihood, no
report) with ``train.threads`` set to the column's value, on an idle machine and beside a
neighbour: a Python busy loop that keeps one core busy from before the run starts to its
end. The figure is the second epoch's seconds from metrics.jsonl (training steps plus the
epoch's held-out evaluation; the first carries one-time costs). "x idle" divides by the
same setting's idle time; the goal for the default (auto) is at most 1.5x. Settings and
neighbour states alternate within each round. ``--quick`` (6,000 training images, one
round) only shows the script works. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402

ARCHS = {
    "mlp": ["latent.dim=50", "model.hidden=[200,200]", "model.activation=tanh"],
    "conv": ["model.arch=conv", "model.channels=[32,64]", "model.hidden=[256]", "model.activation=silu", "latent.dim=16"],
}
COMMON = ["data.name=mnist", "train.epochs=2", "train.eval_k=0", "train.report=false", "train.batch_size=100"]


def epoch_seconds(mnist: Path, arch: str, threads: str, neighbour: bool) -> float:
    """The second epoch's seconds of one run, beside a busy neighbour or not."""
    out = Path(tempfile.mkdtemp(prefix="contention-")) / "run"
    busy = common.busy_neighbour() if neighbour else None
    try:
        if busy:
            time.sleep(1.0)  # the neighbour is running before the run starts
        proc = common.run_process([sys.executable, "-m", "reparam", "train", *COMMON, *ARCHS[arch], f"data.path={mnist}",
                                   f"train.threads={threads}", "--out", str(out), "--quiet"], cwd=common.ROOT)  # fmt: skip
    finally:
        if busy:
            busy.kill()
            busy.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"reparam train failed: {proc.stderr.strip().splitlines()[-1:]}")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return metrics[1]["seconds"] - metrics[0]["seconds"]


def measure(mnist: Path, archs: list[str], settings: list[str], rounds: int) -> dict:
    """(arch, setting, neighbour) -> seconds per round."""
    times: dict = {}
    for _ in range(rounds):
        for arch in archs:
            for neighbour in (False, True):
                for threads in settings:
                    times.setdefault((arch, threads, neighbour), []).append(epoch_seconds(mnist, arch, threads, neighbour))
    return times


def table(times: dict, archs: list[str], settings: list[str]) -> str:
    lines = ["| model | train.threads | idle: epoch s (median) | busy neighbour: epoch s (median) | x idle | rounds idle / busy (s) |",
             "|---|---|---:|---:|---:|---|"]  # fmt: skip
    for arch in archs:
        for threads in settings:
            idle, busy = times[(arch, threads, False)], times[(arch, threads, True)]
            rounds = f"{', '.join(f'{t:.1f}' for t in idle)} / {', '.join(f'{t:.1f}' for t in busy)}"
            lines.append(f"| {arch} | {threads} | {statistics.median(idle):.2f} | {statistics.median(busy):.2f} "
                         f"| {statistics.median(busy) / statistics.median(idle):.2f} | {rounds} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settings", default="auto,1,2", help="train.threads values (default auto,1,2)")
    p.add_argument("--arch", default="mlp,conv", help="models: mlp (784-200-200-50) and/or conv (default both)")
    p.add_argument("--quick", action="store_true", help="6,000 training images, one round, the MLP: a smoke test")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.arch = 1, "mlp"
    archs, settings = a.arch.split(","), a.settings.split(",")
    mnist = common.mnist_subset(6000, 1000) if a.quick else common.MNIST
    before = common.load_average()
    times = measure(mnist, archs, settings, a.rounds)
    flags = f"--rounds {a.rounds} --settings {a.settings} --arch {a.arch}" + (" --quick" if a.quick else "")
    quick = " **Quick mode: a smoke test on 6,000 training images, not a measurement.**" if a.quick else ""
    md = f"""Command: `python benchmarks/contention.py {flags}`.{quick} One `reparam train` process per cell
(MNIST, batch 100, `train.epochs=2 train.eval_k=0 train.report=false`), the second epoch's
seconds (steps and its held-out evaluation) from metrics.jsonl; the neighbour is a Python busy
loop started a second before the run and killed after it. Median of {a.rounds} round(s), settings
and neighbour states alternating within each round. `auto` is the default: timed trials of
1, 2, ... threads at the start and every 30 s or so (see `reparam/devices.py`).
The idle columns are only idle if the machine was: {common.machine_state(before, common.load_average())}

{table(times, archs, settings)}
"""
    common.publish("contention", md, write=not (a.no_write or a.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
