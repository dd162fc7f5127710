"""Shared fixtures: tiny configs and a tiny trained run on the bundled digits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from reparam import config

ROOT = Path(__file__).resolve().parents[1]
MNIST = Path(os.environ.get("REPARAM_MNIST", ROOT.parent / "shared" / "data" / "mnist.npz"))

if os.environ.get("PYTEST_XDIST_WORKER"):  # workers share the cores: one thread each, or torch's threads contend
    torch.set_num_threads(1)

TINY = ["train.epochs=2", "train.eval_k=20", "train.progress=false", "train.report=false", "model.hidden=[32]", "latent.dim=4", "train.threads=1"]


@pytest.fixture(autouse=True)
def _seed_and_validate():
    torch.manual_seed(0)
    prev = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(True)  # validation on in tests
    yield
    torch.distributions.Distribution.set_default_validate_args(prev)


def tiny_config(*overrides: str) -> config.Config:
    return config.load(None, [*TINY, *overrides])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A digits run trained for two epochs: shared, read-only for tests."""
    from reparam.train import train

    return train(tiny_config(), tmp_path_factory.mktemp("run") / "tiny")


@pytest.fixture(scope="session")
def tiny_conditional_run(tmp_path_factory) -> Path:
    """A conditional (model.condition=label) digits run trained for two epochs: shared, read-only for tests."""
    from reparam.train import train

    return train(tiny_config("model.condition=label"), tmp_path_factory.mktemp("run") / "conditional")


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    if not MNIST.is_file():
        pytest.skip(f"MNIST not found at {MNIST} (set REPARAM_MNIST)")
    return MNIST
