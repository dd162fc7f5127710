"""Pythae 0.1.2's TrainingPipeline as one whole process, for ``benchmarks/whole.py``.

    benchmarks/.pythae-venv/bin/python benchmarks/pythae_pipeline.py MNIST.npz EPOCHS OUT [--threads T]

Runs only inside the Pythae virtualenv (``benchmarks/speed.py`` makes it). The same model as
``pythae_worker.py`` (784-200-200-50, tanh, Bernoulli decoder through Pythae's ``bce`` loss,
Adam 1e-3, batch 100), trained by ``TrainingPipeline`` with its own defaults on MNIST's
training images binarized afresh each time one is fetched, the test images (binarized once,
seed 12345) as its evaluation set, and its own output folder under OUT. Whatever the
pipeline writes is written; the parent times the process and reads its peak memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pythae_worker import Decoder, DynamicBinarized, Encoder  # noqa: E402  (its stdout swap is harmless here)


def main() -> None:
    import numpy as np
    import torch
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    p = argparse.ArgumentParser()
    p.add_argument("mnist")
    p.add_argument("epochs", type=int)
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with np.load(a.mnist) as f:
        train = torch.from_numpy(f["x_train"]).float().div(255).unsqueeze(1)
        test = torch.from_numpy(f["x_test"]).float().div(255).unsqueeze(1)
    test = torch.bernoulli(test, generator=torch.Generator().manual_seed(12345))
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=50, reconstruction_loss="bce"), encoder=Encoder(), decoder=Decoder())
    config = BaseTrainerConfig(output_dir=a.out, num_epochs=a.epochs, learning_rate=1e-3,
                               per_device_train_batch_size=100, per_device_eval_batch_size=100)  # fmt: skip
    pipeline = TrainingPipeline(model=model, training_config=config)
    pipeline(train_data=DynamicBinarized(train, torch.zeros(len(train))), eval_data=BaseDataset(test, torch.zeros(len(test))))


if __name__ == "__main__":
    main()
