"""Conv VAE training throughput on MNIST: one process, two processes (torchrun, gloo), a GPU.

    python benchmarks/scale.py [--steps 40] [--batch 128] [--rounds 2]

The model: model.arch=conv (channels [32, 64], dense [256], silu), latent dim 16,
Bernoulli likelihood with dynamic binarization, Adam 1e-3, global batch 128. Each figure
is training images/s over ``--steps`` steps after 5 warm-up steps, through the trainer's
own step (batching, binarization, forward, backward, all-reduce, optimizer). CPU: one
process with 1 and with 2 threads, and 2 processes x 1 thread under torchrun (same global
batch), alternated round by round so that load from other processes hits all alike; the
load average is recorded. GPU (when present): fp32 and bf16 images/s, channels_last, and
the achieved FLOP/s (counted with torch.utils.flop_counter) as a fraction of the GPU's
dense peak from a small table (left blank for an unknown GPU). Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from reparam import config, devices, distributed  # noqa: E402
from reparam import data as data_mod
from reparam.model import build  # noqa: E402
from reparam.train import Trainer  # noqa: E402

MODEL = ["model.arch=conv", "model.channels=[32,64]", "model.hidden=[256]", "model.activation=silu", "latent.dim=16",
         "data.name=mnist", "data.binarize=dynamic", "train.progress=false", "train.report=false"]
#: Dense tensor-core peak FLOP/s (no sparsity) by device-name fragment: (bf16, fp32 incl. TF32 off).
PEAKS = {"H100": (989e12, 67e12), "H200": (989e12, 67e12), "A100": (312e12, 19.5e12), "L4": (121e12, 30e12)}


def trainer(batch: int, device: str = "cpu", precision: str = "fp32", channels_last: bool = False,
            dist: distributed.Dist = distributed.SINGLE) -> Trainer:
    cfg = config.load(None, [*MODEL, f"data.path={common.MNIST}", f"train.batch_size={batch}", f"train.device={device}",
                             f"train.precision={precision}"])
    torch.manual_seed(0)
    data = data_mod.load(cfg.data)
    dev = devices.resolve_device(device, dist.local_rank)
    model = devices.prepare(build(cfg, data.x_shape).to(dev), channels_last, False)
    return Trainer(cfg, model, data, Path(tempfile.mkdtemp(prefix="reparam-scale-")), dist=dist)


#: The IWAE paper's one-layer MLP (784-200-200-50, tanh, Gaussian latent, Bernoulli decoder) on
#: dynamically binarized MNIST, trained through the trainer with no held-out evaluation or report.
MLP = ["data.name=mnist", "data.binarize=dynamic", "latent.dim=50", "model.hidden=[200,200]", "model.activation=tanh",
       "train.progress=false", "train.report=false", "train.eval_every=1000000", "train.threads=0"]  # fmt: skip


def mlp_trainer(data: data_mod.Data, *overrides: str, prefix: str = "reparam-mlp-") -> Trainer:
    """A trainer of ``MLP`` with ``overrides`` on ``data``, from seed 0, writing into a fresh temporary folder."""
    cfg = config.load(None, [*MLP, f"data.path={common.MNIST}", *overrides])
    torch.manual_seed(0)
    return Trainer(cfg, build(cfg, data.x_shape), data, Path(tempfile.mkdtemp(prefix=prefix)))


def step(t: Trainer) -> None:
    """One optimizer step through the trainer's own step, wrapping to a new epoch's order at its end
    (no held-out evaluation, no checkpoint)."""
    t.train_step(t.batches.next())
    if t.batches.epoch_done():
        t.batches.next_epoch()


def images_per_second(t: Trainer, steps: int) -> float:
    """Global images/s over ``steps`` trainer steps after 5 warm-up steps."""
    for _ in range(5):
        step(t)
    sync = torch.cuda.synchronize if t.device.type == "cuda" else (lambda: None)
    distributed.barrier(t.dist)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step(t)
    sync()
    return steps * t.cfg.train.batch_size / (time.perf_counter() - start)


def worker(args) -> None:
    """One rank of the torchrun job: rank 0 prints the global images/s as JSON."""
    torch.set_num_threads(1)
    d = distributed.from_env()
    distributed.init(d, torch.device("cpu"))
    rate = images_per_second(trainer(args.batch, dist=d), args.steps)
    if d.is_main:
        print(json.dumps({"images_per_s": rate}))
    distributed.shutdown(d)


def two_processes(args) -> float:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, "--worker",
           "--steps", str(args.steps), "--batch", str(args.batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def one_process(args, threads: int) -> float:
    torch.set_num_threads(threads)
    return images_per_second(trainer(args.batch), args.steps)


def cpu_rows(args) -> tuple[dict[str, list[float]], list[float]]:
    rates: dict[str, list[float]] = {"1 process x 1 thread": [], "1 process x 2 threads": [], "2 processes x 1 thread (torchrun, gloo)": []}
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        rates["1 process x 1 thread"].append(one_process(args, 1))
        rates["1 process x 2 threads"].append(one_process(args, 2))
        rates["2 processes x 1 thread (torchrun, gloo)"].append(two_processes(args))
        print(json.dumps({k: round(v[-1], 1) for k, v in rates.items()}), file=sys.stderr)
    return rates, loads


def flops_per_image(t: Trainer) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = t.batches.next()
    with FlopCounterMode(display=False) as counter:
        t.train_step(x)
    return counter.get_total_flops() / len(x)


def gpu_rows(args) -> list[str]:
    name = torch.cuda.get_device_name()
    peak = next((p for k, p in PEAKS.items() if k in name), None)
    rows = []
    for precision, channels_last in (("fp32", False), ("bf16", False), ("bf16", True)):
        t = trainer(args.gpu_batch, "cuda", precision, channels_last)
        rate = images_per_second(t, args.steps)
        achieved = rate * flops_per_image(t)
        frac = f"{achieved / peak[precision == 'fp32']:.1%}" if peak else "peak unknown"
        rows.append(f"| {name} | {precision}{', channels_last' if channels_last else ''} | {args.gpu_batch} | {rate:,.0f} | {achieved / 1e12:.2f} TFLOP/s ({frac}) |")
    return rows


def markdown(rates, loads, gpu: list[str], args) -> str:
    lines = [
        f"Conv VAE on MNIST ({' '.join(MODEL[:5])}), Bernoulli, dynamic binarization; global batch {args.batch}; "
        f"training images/s through the trainer's step, median of {args.rounds} alternated rounds of {args.steps} steps. "
        f"Load average (1 min) at each round: {', '.join(f'{x:.2f}' for x in loads)} on {os.cpu_count()} cores "
        "shared with other work, so absolute numbers move with it.",
        "",
        "| CPU setup | images/s (median) | rounds |",
        "|---|---:|---|",
    ]
    for k, v in rates.items():
        lines.append(f"| {k} | {statistics.median(v):,.0f} | {', '.join(f'{x:,.0f}' for x in v)} |")
    lines += ["", f"CPU: {common.cpu_name()}. GPU: " + ("" if gpu else "none on this machine; rerun `python benchmarks/scale.py` on one to fill this in.")]
    if gpu:
        lines += ["", "| GPU | precision | batch | images/s | achieved (fraction of dense peak) |", "|---|---|---:|---:|---|", *gpu]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--gpu-batch", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    rates, loads = cpu_rows(args)
    gpu = gpu_rows(args) if torch.cuda.is_available() else []
    md = markdown(rates, loads, gpu, args)
    common.publish("scale", md)


if __name__ == "__main__":
    main()
