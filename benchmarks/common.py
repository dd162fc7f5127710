"""Shared by the benchmark scripts: the machine's description and BENCHMARKS.md sections."""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(os.environ.get("REPARAM_BENCHMARKS", ROOT / "BENCHMARKS.md"))  # another file: a run elsewhere, merged later
MNIST = Path(os.environ.get("REPARAM_MNIST", ROOT.parent / "shared" / "data" / "mnist.npz"))
HEADER = "# Benchmarks\n\nEvery section below is written by the script it names; rerun the script to refresh it.\n"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    import torch

    return (
        f"{cpu_name()}, {os.cpu_count()} logical cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}, {platform.system()}"
    )


def update_section(name: str, body: str, script: str | None = None) -> None:
    """Replace (or append) the block between this section's markers in BENCHMARKS.md, atomically
    (``script``: the script that writes it, when its name is not the section's)."""
    sys.path.insert(0, str(ROOT))
    from reparam.files import atomic_write_bytes

    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    stamp = (
        f"_Written by `benchmarks/{script or name}.py` on {time.strftime('%Y-%m-%d')}; machine: {machine()}; "
        f"load average when written: {load}._\n\n"
    )
    block = f"{begin}\n{stamp}{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write_bytes(BENCHMARKS, text.encode())


def load_average() -> float:
    """The 1-minute load average (0 where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def machine_state(before: float, after: float) -> str:
    """A sentence for a section: the load average around the measurement and what it means."""
    cpus = os.cpu_count() or 1
    # the load before says whether others were busy; the load after also counts the measurement itself
    state = "idle before the measurement" if before < 0.25 * cpus else "loaded: other processes ran before it started, so these times may not be the machine's best"
    return f"1-minute load average {before:.2f} before, {after:.2f} after on {cpus} cores ({state})."


def mnist_subset(n_train: int, n_test: int) -> Path:
    """The first n_train and n_test MNIST images (with labels) in a temporary Keras-layout .npz,
    for the scripts' --quick modes (data.name=mnist reads it like the full file)."""
    import numpy as np

    with np.load(MNIST) as f:
        arrays = {"x_train": f["x_train"][:n_train], "y_train": f["y_train"][:n_train], "x_test": f["x_test"][:n_test], "y_test": f["y_test"][:n_test]}
    path = Path(tempfile.mkdtemp(prefix="reparam-bench-")) / "mnist.npz"
    np.savez(path, **arrays)
    return path


@dataclass
class Process:
    """A finished child process: wall seconds, peak resident memory (MB), exit code, output."""

    seconds: float
    peak_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_process(args: list[str], env: dict | None = None, cwd: Path | None = None) -> Process:
    """Run ``args`` to completion; its own wall time and peak RSS (os.wait4's ru_maxrss, in KB on Linux)."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=out, stderr=err, env={**os.environ, **(env or {})}, cwd=cwd, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    peak_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KB on Linux
    return Process(seconds, peak_mb, proc.returncode, out.read(), err.read())


def busy_neighbour() -> subprocess.Popen:
    """Another process that keeps one core busy (a Python busy loop) until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True:\n    pass"])


def publish(name: str, body: str, write: bool = True, script: str | None = None) -> None:
    """Print a benchmark's section and, unless told not to, write it into BENCHMARKS.md."""
    print(body)
    if write:
        update_section(name, body, script)


def paired(row: dict, ref: dict | None) -> str:
    """row's NLL minus the reference row's (``per_image`` tensors over the same images and importance
    draws), with the standard error of the per-image differences; "-" for the reference itself."""
    if ref is None or row is ref:
        return "-"
    diff = row["per_image"] - ref["per_image"]
    return f"{float(diff.mean()):+.2f} ± {float(diff.std() / math.sqrt(len(diff))):.2f}"
