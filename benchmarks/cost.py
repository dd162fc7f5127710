"""How cost grows: training and IS-evaluation time against batch size, latent dimension, K and data size.

    python benchmarks/cost.py [--steps 40] [--eval-n 200] [--threads 2]

The model: the IWAE paper's one-layer MLP (784-200-200, tanh, Gaussian latent, Bernoulli
likelihood), dynamically binarized MNIST, Adam. Training: seconds per 10,000 images through the
trainer's own step (``--steps`` steps after 5 warm-up steps) for each batch size and latent
dimension; an epoch over N images costs N / 10,000 times that, so a run's training time is
about epochs x N / 10,000 x the figure. IS evaluation: milliseconds per test image of
``reparam.evaluate.log_likelihood`` at K samples (``--eval-n`` test images), for each K and
latent dimension; the final evaluation of a run costs N_test x that. A check of the linear
model: one epoch over 6,000 and over 60,000 images, predicted from the batch-100 figure and
measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.scale import images_per_second, mlp_trainer, step  # noqa: E402
from reparam import config, evaluate  # noqa: E402
from reparam import data as data_mod  # noqa: E402
from reparam.train import Trainer  # noqa: E402


def make(data, batch: int, dim: int) -> Trainer:
    return mlp_trainer(data, f"latent.dim={dim}", f"train.batch_size={batch}", prefix="reparam-cost-")


def epoch_seconds(t: Trainer) -> float:
    start, epoch = time.perf_counter(), t.batches.epoch
    while t.batches.epoch == epoch:
        step(t)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--eval-n", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = data_mod.load(config.DataConfig(name="mnist", path=str(common.MNIST), binarize="dynamic"))
    load0 = os.getloadavg()[0]
    train_rows = []
    per_10k = {}
    for dim in (10, 50, 200):
        cells = []
        for batch in (20, 100, 1000):
            rate = images_per_second(make(data, batch, dim), a.steps if batch < 1000 else max(5, a.steps // 4))
            per_10k[(dim, batch)] = 1e4 / rate
            cells.append(f"{1e4 / rate:.2f}")
            print(f"train dim {dim} batch {batch}: {1e4 / rate:.2f} s per 10,000 images", flush=True)
        train_rows.append(f"| {dim} | {' | '.join(cells)} |")
    eval_rows = []
    x = data.test[: a.eval_n]
    for dim in (10, 50, 200):
        model = make(data, 100, dim).model.eval()
        cells = []
        for k in (100, 1000, 5000):
            evaluate.log_likelihood(model, x[:16], 10)
            start = time.perf_counter()
            evaluate.log_likelihood(model, x, k)
            ms = 1000 * (time.perf_counter() - start) / len(x)
            cells.append(f"{ms:.2f}")
            print(f"IS dim {dim} K {k}: {ms:.2f} ms per image", flush=True)
        eval_rows.append(f"| {dim} | {' | '.join(cells)} |")
    check = []
    for n in (6000, 60000):
        sub = data_mod.Data(data.train[:n], data.test, None, None, "mnist")
        t = make(sub, 100, 50)
        measured = epoch_seconds(t)
        check.append(f"| {n:,} | {n / 1e4 * per_10k[(50, 100)]:.1f} | {measured:.1f} |")
        print(f"epoch over {n}: predicted {n / 1e4 * per_10k[(50, 100)]:.1f} s, measured {measured:.1f} s", flush=True)
    body = f"""Command: `python benchmarks/cost.py --steps {a.steps} --eval-n {a.eval_n} --threads {a.threads}`.
The IWAE paper's one-layer MLP (784-200-200-D, tanh, Gaussian latent, Bernoulli likelihood), dynamically binarized
MNIST, {a.threads} thread(s). Training: seconds per 10,000 images through the trainer's step (batching, binarization,
forward, backward, Adam); a run's training time is about epochs x N_train / 10,000 x the figure. IS evaluation:
milliseconds per test image at K samples ({a.eval_n} images); the final evaluation costs N_test x the figure
(`train.eval_k=auto` chooses K and the images to fit ~15% of the training time). {common.machine_state(load0, os.getloadavg()[0])}

Training, seconds per 10,000 images:

| latent dim | batch 20 | batch 100 | batch 1000 |
|---|---:|---:|---:|
{chr(10).join(train_rows)}

IS evaluation, milliseconds per test image:

| latent dim | K = 100 | K = 1000 | K = 5000 |
|---|---:|---:|---:|
{chr(10).join(eval_rows)}

The linear model checked: one epoch at batch 100, latent dim 50, predicted from the table and measured (held-out
evaluation not included):

| training images | predicted s | measured s |
|---:|---:|---:|
{chr(10).join(check)}
"""
    common.publish("cost", body, write=not a.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
