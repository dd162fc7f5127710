"""The end-of-run log-likelihood under a time budget: how many samples, on how many test images.

With K = 500 on every one of MNIST's 10,000 test images the importance-sampled estimate
took longer than a short run's training (a conv decoder: more than 15 minutes after a
4-minute epoch). ``train.eval_k=auto`` fits it into ``SHARE`` of the training time: it
times a few decodes (``seconds_per_sample``), then takes the first plan of ``ladder``
whose cost fits what is left of the budget. The plan prefers every test image (the
standard error over images is what separates two models) with K from 1000 down to 100,
then fewer images at K = 100, then 1,000 images with fewer samples. A subset is the
first n images of one fixed permutation (``SUBSET_SEED``, not the run's seed), so the
subsets of two runs are nested and their numbers comparable image for image. The
full-precision number is ``reparam eval RUN --k 5000``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

#: Largest share of the run's training time the final evaluation (ELBO, dashboard, IS) may take.
SHARE = 0.15
#: Seeds the one permutation of the test set whose first n images form every subset.
SUBSET_SEED = 2016
K_ALL = (1000, 500, 200, 100)  # samples per image, every test image
N_SUBSET, K_SUBSET = (5000, 2000, 1000), 100  # fewer images at K = 100
N_FEW, K_FEW = 1000, (50, 20, 10, 5, 2, 1)  # at most 1,000 images, fewer samples
#: The probe: samples per image, on the first ``DRAW_EXAMPLES`` test images.
PROBE_K = 100
FULL = "reparam eval RUN --k 5000"


@dataclass
class Plan:
    """An IS evaluation to run: ``k`` samples on ``n`` of ``n_test`` images (``index``: which; None: all)."""

    k: int
    n: int
    n_test: int
    budget_seconds: float  # what was left for the IS estimate
    seconds_per_sample: float  # measured: seconds per (image x sample), one model

    @property
    def index(self) -> torch.Tensor | None:
        return subset(self.n_test, self.n)

    def describe(self) -> dict:
        return {"eval_k": "auto", "k": self.k, "n": self.n, "n_test": self.n_test, "budget_seconds": round(self.budget_seconds, 3),
                "seconds_per_sample": self.seconds_per_sample, "subset_seed": SUBSET_SEED if self.n < self.n_test else None,
                "full": FULL}  # fmt: skip


def ladder(n_test: int) -> Iterator[tuple[int, int]]:
    """(images, samples) plans, most informative first."""
    yield from ((n_test, k) for k in K_ALL)
    yield from ((n, K_SUBSET) for n in N_SUBSET if n < n_test)
    yield from ((min(n_test, N_FEW), k) for k in K_FEW)


def choose(n_test: int, seconds_per_sample: float, seconds: float) -> tuple[int, int]:
    """The first plan of ``ladder`` whose n x K x seconds_per_sample fits ``seconds``; the
    cheapest (1,000 images, K = 1) when none does."""
    plans = list(ladder(n_test))
    return next(((n, k) for n, k in plans if n * k * seconds_per_sample <= seconds), plans[-1])


def subset(n_test: int, n: int) -> torch.Tensor | None:
    """The first n of a fixed permutation of range(n_test), sorted (None when n covers them all)."""
    if n >= n_test:
        return None
    perm = torch.randperm(n_test, generator=torch.Generator().manual_seed(SUBSET_SEED))
    return perm[:n].sort().values


def seconds_per_sample(log_likelihood, model, x: torch.Tensor, examples: int) -> float:
    """Seconds per (image x sample) of ``log_likelihood(model, x, k)`` on the first ``examples``
    images at K = PROBE_K, after a small warm-up call."""
    xb = x[:examples]
    log_likelihood(model, xb, 8)
    start = time.perf_counter()
    log_likelihood(model, xb, PROBE_K)
    return (time.perf_counter() - start) / (len(xb) * PROBE_K)


def plan(log_likelihood, model, x: torch.Tensor, seconds: float, models: int, examples: int) -> Plan:
    """The plan for ``models`` IS estimates (a relaxed family also scores its discrete model)
    that together fit ``seconds``; the probe's own time counts against it."""
    start = time.perf_counter()
    per = seconds_per_sample(log_likelihood, model, x, examples)
    left = max(0.0, seconds - (time.perf_counter() - start)) / max(1, models)
    n, k = choose(len(x), per, left)
    return Plan(k=k, n=n, n_test=len(x), budget_seconds=left * models, seconds_per_sample=per)
