"""The whole process, defaults included: ``reparam train`` against Pythae 0.1.2's TrainingPipeline.

    python benchmarks/whole.py [--epochs 3,20] [--rounds 3] [--no-pythae] [--quick]

The job: the IWAE paper's one-layer model (784-200-200-50, tanh, Bernoulli decoder), Adam
1e-3, batch 100, dynamically binarized MNIST, E epochs. reparam runs as a user runs it,
``python -m reparam train data.name=mnist data.path=... latent.dim=50 model.hidden=[200,200]
train.epochs=E --out DIR --quiet``, every other setting at its default (the per-epoch test
ELBO and dashboard, the budgeted final log-likelihood, report.html, the pictures, the thread
policy); Pythae runs ``benchmarks/pythae_pipeline.py`` (its TrainingPipeline with its
defaults, the test set as its evaluation set) in ``benchmarks/.pythae-venv``. The two
alternate within each round, so that load from other processes hits both alike. Each
figure is the whole process, from interpreter start to exit, and its peak resident memory
(``os.wait4``). ``--quick`` (1 epoch, 1 round, 6,000 training images) only shows the
script works. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.speed import venv_python  # noqa: E402

HERE = Path(__file__).resolve().parent
MODEL = ["data.name=mnist", "latent.dim=50", "model.hidden=[200,200]", "model.activation=tanh", "train.batch_size=100", "train.lr=1e-3"]


def reparam_run(mnist: Path, epochs: int) -> tuple[common.Process, dict]:
    """One ``reparam train`` process and its summary.json."""
    out = Path(tempfile.mkdtemp(prefix="whole-reparam-")) / "run"
    proc = common.run_process([sys.executable, "-m", "reparam", "train", *MODEL, f"data.path={mnist}", f"train.epochs={epochs}",
                               "--out", str(out), "--quiet"], cwd=common.ROOT)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"reparam train failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc, json.loads((out / "summary.json").read_text())


def pythae_run(python: Path, mnist: Path, epochs: int) -> common.Process:
    out = tempfile.mkdtemp(prefix="whole-pythae-")
    proc = common.run_process([str(python), str(HERE / "pythae_pipeline.py"), str(mnist), str(epochs), out])
    if proc.returncode != 0:
        raise RuntimeError(f"Pythae's pipeline failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc


def measure(mnist: Path, epochs: int, rounds: int, python: Path | None) -> dict:
    """Interleaved rounds of one job: the processes of each code and reparam's summaries."""
    runs: dict = {"reparam": [], "Pythae 0.1.2 TrainingPipeline": [], "summaries": []}
    for _ in range(rounds):
        proc, summary = reparam_run(mnist, epochs)
        runs["reparam"].append(proc)
        runs["summaries"].append(summary)
        if python is not None:
            runs["Pythae 0.1.2 TrainingPipeline"].append(pythae_run(python, mnist, epochs))
    return runs


def rows(epochs: int, runs: dict) -> list[str]:
    ref = statistics.median(p.seconds for p in runs["Pythae 0.1.2 TrainingPipeline"]) if runs["Pythae 0.1.2 TrainingPipeline"] else None
    out = []
    for who in ("reparam", "Pythae 0.1.2 TrainingPipeline"):
        procs = runs[who]
        if not procs:
            continue
        wall = statistics.median(p.seconds for p in procs)
        speed = f"{ref / wall:.2f}x" if ref else "-"
        rounds = ", ".join(f"{p.seconds:.1f}" for p in procs)
        out.append(f"| {epochs} | {who} | {wall:.1f} | {rounds} | {statistics.median(p.peak_mb for p in procs):,.0f} | {speed} |")
    return out


def breakdown(epochs: int, runs: dict) -> list[str]:
    """reparam's own account of where its process time went (medians over rounds)."""
    out = []
    for proc, s in zip(runs["reparam"], runs["summaries"]):
        plan = s.get("nll_plan") or {}
        evaluation = plan.get("seconds", 0.0)
        out.append(f"| {epochs} | {proc.seconds:.1f} | {s['train_seconds']:.1f} | {evaluation:.1f} ({evaluation / s['train_seconds']:.0%}) "
                   f"| K = {s['k']}, {s['n']:,} of {s['n_test']:,} images | {s['nll']:.2f} ± {s['nll_se']:.2f} "
                   f"| {proc.seconds - s['train_seconds'] - evaluation:.1f} |")  # fmt: skip
    return out


def markdown(results: dict[int, dict], a, state: str, note: str) -> str:
    flags = f"--epochs {a.epochs} --rounds {a.rounds}" + (" --no-pythae" if a.no_pythae else "") + (" --quick" if a.quick else "")
    table = ["| epochs | code | wall s (median) | rounds (s) | peak memory MB (median) | speed, x Pythae's |", "|---|---|---:|---|---:|---:|"]
    detail = ["| epochs | reparam process s | training s | final evaluation s (share of training) | its plan | NLL ± SE | the rest s |",
              "|---|---:|---:|---:|---|---|---:|"]  # fmt: skip
    for epochs, runs in results.items():
        table += rows(epochs, runs)
        detail += breakdown(epochs, runs)
    quick = " **Quick mode: a smoke test of the script on 6,000 training images, not a measurement.**" if a.quick else ""
    return f"""Command: `python benchmarks/whole.py {flags}`.{quick} The same job for both: 784-200-200-50 tanh,
Bernoulli decoder, Adam 1e-3, batch 100, dynamically binarized MNIST. reparam: `reparam train
data.name=mnist latent.dim=50 model.hidden=[200,200] train.epochs=E --quiet` with every other
setting at its default; Pythae: `TrainingPipeline` with its defaults (`benchmarks/pythae_pipeline.py`).
Whole processes, interpreter start to exit, alternating within each round; peak resident memory
from `wait4`. {note} {state}

{chr(10).join(table)}

Where reparam's process time went, per round ("the rest": interpreter start, imports, data,
per-run files, report.html and the pictures):

{chr(10).join(detail)}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", default="3,20", help="comma-separated epoch counts (default 3,20)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-pythae", action="store_true")
    p.add_argument("--quick", action="store_true", help="1 epoch, 1 round, 6,000 training images: a smoke test")
    p.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs, a.rounds = "1", 1
    mnist = common.mnist_subset(6000, 1000) if a.quick else common.MNIST
    python = None if a.no_pythae else venv_python()
    note = "Pythae was skipped." if python is None else "Pythae 0.1.2 in its own virtualenv with the same torch."
    before = common.load_average()
    results = {int(e): measure(mnist, int(e), a.rounds, python) for e in a.epochs.split(",")}
    md = markdown(results, a, common.machine_state(before, common.load_average()), note)
    common.publish("whole", md, write=not (a.no_write or a.quick))
    if a.quick:
        print("whole: --quick is printed only; BENCHMARKS.md keeps the last full run", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
