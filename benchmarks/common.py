"""Shared by the benchmark scripts: the machine's description and BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
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


def update_section(name: str, body: str) -> None:
    """Replace (or append) the block between this script's markers in BENCHMARKS.md, atomically."""
    sys.path.insert(0, str(ROOT))
    from reparam.files import atomic_write_bytes

    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    stamp = (
        f"_Written by `benchmarks/{name}.py` on {time.strftime('%Y-%m-%d')}; machine: {machine()}; "
        f"load average when written: {load}._\n\n"
    )
    block = f"{begin}\n{stamp}{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write_bytes(BENCHMARKS, text.encode())


def publish(name: str, body: str, write: bool = True) -> None:
    """Print a benchmark's section and, unless told not to, write it into BENCHMARKS.md."""
    print(body)
    if write:
        update_section(name, body)
