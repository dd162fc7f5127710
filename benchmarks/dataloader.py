"""In-memory index batching vs a per-item Dataset/DataLoader, on the same MNIST model.

Both loops run the identical training step (784-200-200-50 tanh Gaussian VAE, Bernoulli
likelihood, dynamic binarization, batch 100, Adam); only the way a batch is produced
differs. Rounds alternate between the two loops so background load hits both alike.

    python benchmarks/dataloader.py [--steps 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import MNIST, publish  # noqa: E402
from reparam import config, data  # noqa: E402
from reparam.model import build  # noqa: E402
from reparam.train import Trainer  # noqa: E402

OVERRIDES = ["data.name=mnist", "data.binarize=dynamic", "latent.dim=50", "model.hidden=[200,200]", "train.batch_size=100"]


class PerItem(Dataset):
    """The usual pattern: one image at a time, binarized in __getitem__, collated by the loader."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.bernoulli(self.images[i])


def in_memory_batches(trainer: Trainer):
    """reparam's loop: a permutation, index the tensor, binarize the whole batch."""
    while True:
        perm = torch.randperm(len(trainer.batches.train_x), generator=trainer.batches.gen)
        for idx in perm.split(trainer.cfg.train.batch_size):
            yield data.draw_binary(trainer.batches.train_x[idx], trainer.batches.gen)


def loader_batches(trainer: Trainer):
    loader = DataLoader(PerItem(trainer.batches.train_x), batch_size=trainer.cfg.train.batch_size, shuffle=True, num_workers=0)
    while True:
        yield from loader


def images_per_second(trainer: Trainer, batches, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(next(batches))
    return steps * trainer.cfg.train.batch_size / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cfg = config.load(None, [*OVERRIDES, f"data.path={MNIST}"])
    torch.manual_seed(0)
    mnist = data.load(cfg.data)
    trainer = Trainer(cfg, build(cfg, mnist.x_shape), mnist, Path(tempfile.mkdtemp()))
    loops = {"in-memory, batched by index (reparam)": in_memory_batches(trainer), "per-item Dataset + DataLoader": loader_batches(trainer)}
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for batches in loops.values():  # warm-up
        images_per_second(trainer, batches, 20)
    for _ in range(args.rounds):
        for name, batches in loops.items():
            rates[name].append(images_per_second(trainer, batches, args.steps))
    ours, theirs = (statistics.median(r) for r in rates.values())
    rows = "\n".join(f"| {name} | {statistics.median(r):,.0f} | {min(r):,.0f} – {max(r):,.0f} |" for name, r in rates.items())
    body = (
        "## Training step: in-memory batches vs a per-item DataLoader\n\n"
        f"MNIST, 784-200-200-50 tanh, Bernoulli, dynamic binarization, batch 100, Adam; "
        f"{args.rounds} alternating rounds of {args.steps} steps, median and range.\n\n"
        "| loop | images/s (median) | range |\n|---|---:|---:|\n"
        f"{rows}\n\nSpeed-up of in-memory batching: **{ours / theirs:.2f}x**.\n"
    )
    publish("dataloader", body)


if __name__ == "__main__":
    main()
