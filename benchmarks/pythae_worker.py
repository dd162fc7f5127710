"""The Pythae side of ``benchmarks/speed.py``; runs only inside the Pythae virtualenv.

It imports Pythae 0.1.2 from that environment and never from the project. Protocol: one
JSON command per line on stdin, one JSON reply per line on stdout, so that the parent
can interleave Pythae's runs with reparam's in the same time window.

Commands: ``{"cmd": "setup", "mnist": PATH, "threads": T, "seed": S}``,
``{"cmd": "train_epoch", "batch_size": B}`` (one whole epoch of Pythae's own
``BaseTrainer.train_step``, dynamic binarization per item in the Dataset),
``{"cmd": "nll", "n": N, "k": K, "batch_size": B}`` (``VAE.get_nll`` on N test images).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

PROTOCOL, sys.stdout = sys.stdout, sys.stderr  # Pythae's logs must not reach the protocol pipe

from pythae.data.datasets import BaseDataset, DatasetOutput  # noqa: E402
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.trainers import BaseTrainer, BaseTrainerConfig

STATE: dict = {}


class Encoder(BaseEncoder):
    """784-200-200-(50+50), tanh: the model of Burda et al. (2016)."""

    def __init__(self, dim: int = 50):
        BaseEncoder.__init__(self)
        self.net = nn.Sequential(nn.Linear(784, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh())
        self.mu, self.logvar = nn.Linear(200, dim), nn.Linear(200, dim)

    def forward(self, x):
        h = self.net(x.reshape(x.shape[0], -1))
        return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))


class Decoder(BaseDecoder):
    """50-200-200-784, tanh, sigmoid output for Pythae's ``bce`` loss."""

    def __init__(self, dim: int = 50):
        BaseDecoder.__init__(self)
        self.net = nn.Sequential(
            nn.Linear(dim, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 784), nn.Sigmoid()
        )

    def forward(self, z):
        return ModelOutput(reconstruction=self.net(z).reshape(z.shape[0], 1, 28, 28))


class DynamicBinarized(BaseDataset):
    """Pythae's Dataset with a fresh Bernoulli draw of each image when it is fetched."""

    def __getitem__(self, index):
        return DatasetOutput(data=torch.bernoulli(self.data[index]), labels=self.labels[index])


def setup(mnist: str, threads: int, seed: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    arrays = np.load(mnist)
    train = torch.from_numpy(arrays["x_train"]).float().div(255).unsqueeze(1)
    test = torch.from_numpy(arrays["x_test"]).float().div(255).unsqueeze(1)
    g = torch.Generator().manual_seed(12345)
    STATE["test"] = torch.bernoulli(test, generator=g)
    STATE["train"] = DynamicBinarized(train, torch.zeros(len(train)))
    cfg = VAEConfig(input_dim=(1, 28, 28), latent_dim=50, reconstruction_loss="bce")
    STATE["model"] = VAE(cfg, encoder=Encoder(), decoder=Decoder())
    STATE["trainers"] = {}
    return {"ok": True, "threads": torch.get_num_threads(), "torch": torch.__version__}


def trainer(batch_size: int) -> BaseTrainer:
    if batch_size not in STATE["trainers"]:
        out = tempfile.mkdtemp(prefix="pythae-speed-")
        tc = BaseTrainerConfig(
            output_dir=out, per_device_train_batch_size=batch_size, num_epochs=1, learning_rate=1e-3
        )
        t = BaseTrainer(STATE["model"], train_dataset=STATE["train"], training_config=tc)
        t.prepare_training()
        STATE["trainers"][batch_size] = t
    return STATE["trainers"][batch_size]


def train_epoch(batch_size: int) -> dict:
    t = trainer(batch_size)
    start = time.perf_counter()
    loss = t.train_step(epoch=1)
    return {"seconds": time.perf_counter() - start, "images": len(STATE["train"]), "loss": float(loss)}


def nll(n: int, k: int, batch_size: int) -> dict:
    model = STATE["model"].eval()
    start = time.perf_counter()
    with torch.no_grad():
        value = model.get_nll(STATE["test"][:n], n_samples=k, batch_size=batch_size)
    seconds = time.perf_counter() - start
    model.train()
    return {"seconds": seconds, "nll": float(value), "n": n, "k": k}


COMMANDS = {"setup": setup, "train_epoch": train_epoch, "nll": nll}


def main() -> None:
    for line in sys.stdin:
        msg = json.loads(line)
        reply = COMMANDS[msg.pop("cmd")](**msg)
        PROTOCOL.write(json.dumps(reply) + "\n")
        PROTOCOL.flush()


if __name__ == "__main__":
    main()
