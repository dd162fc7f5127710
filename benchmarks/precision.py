"""Training in bfloat16 on the CPU (``train.precision=bf16``): its speed and its test NLL, against fp32.

    python benchmarks/precision.py [--epochs 10] [--rounds 3] [--batches 100,250,1000] [--images 20000] [--eval-n 2000] [--eval-k 1000]

The model: the IWAE paper's one-layer MLP (784-200-200-50, tanh, Bernoulli decoder), Adam
1e-3, dynamically binarized MNIST. Speed: milliseconds per trainer step (batching,
binarization, forward and backward under autocast, Adam) at each of ``--batches``, fp32 and
bf16 alternated round by round over ``--images`` images each. NLL: one run per precision
from the same seed for ``--epochs`` epochs at batch 100, both scored in fp32 with the same
importance draws (-L_K on the first ``--eval-n`` test images), so their difference is paired.
Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import paired  # noqa: E402
from benchmarks.scale import MLP, mlp_trainer, step  # noqa: E402
from reparam import config, evaluate  # noqa: E402
from reparam import data as data_mod
from reparam.train import Trainer  # noqa: E402


def trainer(data, precision: str, batch: int, epochs: int = 1) -> Trainer:
    return mlp_trainer(data, "train.lr=1e-3", f"train.precision={precision}", f"train.batch_size={batch}", f"train.epochs={epochs}", prefix="reparam-precision-")


def cpu_flags() -> str:
    """The CPU's bfloat16 instructions, as /proc/cpuinfo names them."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return ", ".join(found) if found else "none"


def speed(data, batches: list[int], rounds: int, images: int) -> list[str]:
    """Table rows: ms per step (median over rounds) by batch and precision."""
    setups = [(b, p) for b in batches for p in ("fp32", "bf16")]
    trainers = {s: trainer(data, s[1], s[0]) for s in setups}
    times: dict = {s: [] for s in setups}
    for t in trainers.values():
        for _ in range(5):
            step(t)
    for _ in range(rounds):
        for (batch, precision), t in trainers.items():
            n = max(1, images // batch)
            start = time.perf_counter()
            for _ in range(n):
                step(t)
            times[(batch, precision)].append((time.perf_counter() - start) / n)
    rows = []
    for batch, precision in setups:
        ms = 1000 * statistics.median(times[(batch, precision)])
        ratio = statistics.median(times[(batch, "fp32")]) / statistics.median(times[(batch, precision)])
        rounds_ms = ", ".join(f"{1000 * v:.2f}" for v in times[(batch, precision)])
        rows.append(f"| {batch} | {precision} | {ms:.2f} | {rounds_ms} | {batch / ms * 1000:,.0f} | {ratio:.2f}x |")
    return rows


def nll_rows(data, epochs: int, eval_n: int, eval_k: int) -> list[str]:
    """Table rows: one training run per precision, scored in fp32 with the same draws."""
    out = []
    for precision in ("fp32", "bf16"):
        t = trainer(data, precision, 100, epochs)
        start = time.perf_counter()
        while t.batches.epoch < epochs:
            t.advance()
        seconds = time.perf_counter() - start
        model, x = t.model.eval(), t.held_out.x[:eval_n]
        log_px, _ = evaluate.log_likelihood(model, x, eval_k)
        nll = -log_px.double()
        out.append(dict(precision=precision, seconds=seconds, per_image=nll, nll=float(nll.mean()), se=float(nll.std() / math.sqrt(len(nll))),
                        elbo=evaluate.elbo_terms(model, x)["elbo"]))  # fmt: skip
        print(f"{precision}: NLL {out[-1]['nll']:.2f} ± {out[-1]['se']:.2f} after {seconds:.0f} s", flush=True)
    return [f"| {r['precision']} | {epochs} | {r['seconds']:.0f} | {r['elbo']:.2f} | {r['nll']:.2f} ± {r['se']:.2f} | {paired(r, out[0])} |" for r in out]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", default="100,250,1000", help="batch sizes of the speed table")
    p.add_argument("--images", type=int, default=20000, help="images per timed measurement")
    p.add_argument("--eval-n", type=int, default=2000)
    p.add_argument("--eval-k", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = data_mod.load(config.load(None, [*MLP, f"data.path={common.MNIST}"]).data)
    load0 = os.getloadavg()[0]
    batches = [int(b) for b in a.batches.split(",")]
    speed_rows = speed(data, batches, a.rounds, a.images)
    nll = nll_rows(data, a.epochs, a.eval_n, a.eval_k)
    body = f"""Command: `python benchmarks/precision.py --epochs {a.epochs} --rounds {a.rounds} --batches {a.batches} --images {a.images} --eval-n {a.eval_n} --eval-k {a.eval_k}`.
784-200-200-50 tanh, Bernoulli decoder, dynamically binarized MNIST, Adam 1e-3, {a.threads} threads; `train.precision=bf16`
runs the forward and backward under CPU autocast (the networks' matrix products and activations in bfloat16; their outputs,
the likelihood, KL and Adam in float32).
CPU capability as torch sees it: {torch.backends.cpu.get_cpu_capability()}; bfloat16 instructions: {cpu_flags()}.
{common.machine_state(load0, os.getloadavg()[0])}

Speed: ms per trainer step, alternated round by round ({a.images:,} images per measurement); "x fp32" is fp32's time over the row's.

| batch | precision | ms per step (median) | rounds (ms) | images/s | x fp32 |
|---|---|---:|---|---:|---:|
{chr(10).join(speed_rows)}

Test NLL: one run per precision from the same seed, {a.epochs} epochs at batch 100, both scored in fp32 with the same
importance draws: -L_{a.eval_k} on the first {a.eval_n:,} test images, the difference against fp32 paired over images.

| training precision | epochs | training s | test ELBO | NLL ± SE (nats) | against fp32 |
|---|---:|---:|---:|---|---|
{chr(10).join(nll)}
"""
    common.publish("precision", body, write=not a.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
