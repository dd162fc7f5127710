"""The training loop: in-memory data batched by index, Adam, held-out evaluation, checkpoints.

The loop knows nothing about families, likelihoods or bounds: it calls the configured
objective, minimizes ``-bound.mean()``, and calls ``model.on_step`` for schedules.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from . import data as data_mod
from . import evaluate, objectives, pictures, runs
from .config import Config
from .errors import ConfigError
from .model import VAE, build

Hook = Callable[[dict], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA GPU is available; use train.device=cpu")
    return torch.device(name)


def make_optimizer(model: VAE, lr: float) -> torch.optim.Optimizer:
    """Adam, with the fused kernel where this torch build has it (fewer passes over the weights)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - older torch or device without it
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


class Trainer:
    """Runs ``cfg.train.epochs`` epochs and writes the run folder as it goes."""

    def __init__(self, cfg: Config, model: VAE, data: data_mod.Data, run_dir: Path, hooks: Iterable[Hook] = ()):
        self.cfg, self.model, self.run_dir, self.hooks = cfg, model, run_dir, list(hooks)
        self.device = next(model.parameters()).device
        self.train_x = data.train.to(self.device)
        self.test_x = data.test.to(self.device)
        self.objective = objectives.lookup(cfg.objective.name)
        self.opt = make_optimizer(model, cfg.train.lr)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.step, self.epoch, self.metrics = 0, 0, []
        self.dynamic = cfg.data.binarize == "dynamic"
        self.start = time.perf_counter()

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_x) / self.cfg.train.batch_size)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimizer step on a batch x (B, *x_shape); returns the batch-mean terms."""
        kwargs = objectives.call_kwargs(self.cfg.objective, self.step)
        bound, terms = self.objective(self.model, x, **kwargs)
        loss = -bound.mean()  # the one reduction over the batch
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.model.on_step(self.step)
        return {"loss": loss.detach(), **{k: v.detach().mean() for k, v in terms.items()}}

    def run_epoch(self, bar) -> dict[str, float]:
        perm = torch.randperm(len(self.train_x), generator=self.gen, device=self.device)
        sums: dict[str, torch.Tensor] = {}
        for i, idx in enumerate(perm.split(self.cfg.train.batch_size)):
            x = self.train_x[idx]
            if self.dynamic:
                x = data_mod.binarize(x, self.gen)
            for key, value in self.train_step(x).items():
                sums[key] = sums.get(key, 0.0) + value
            bar.update(1)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{float(sums['loss']) / (i + 1):.2f}", kl=f"{float(sums.get('kl', 0.0)) / (i + 1):.2f}")
        self.epoch += 1
        return {f"train_{k}": float(v) / self.steps_per_epoch for k, v in sums.items()}

    def evaluate_epoch(self, train_terms: dict[str, float]) -> dict:
        self.model.eval()
        test = evaluate.elbo_terms(self.model, self.test_x)
        self.model.train()
        record = {"epoch": self.epoch, "step": self.step, "seconds": round(time.perf_counter() - self.start, 3)}
        record.update(train_terms)
        record.update({f"test_{k}": v for k, v in test.items()})
        self.metrics.append(record)
        payload = "".join(json.dumps(m, sort_keys=True) + "\n" for m in self.metrics)
        runs.atomic_write_bytes(self.run_dir / runs.METRICS, payload.encode())
        for hook in self.hooks:
            hook(record)
        return record

    def checkpoint(self) -> None:
        tensors, groups = runs.optimizer_tensors(self.opt)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.generator"] = self.gen.get_state()
        meta = {"step": self.step, "epoch": self.epoch, "x_shape": list(self.model.x_shape), "param_groups": groups}
        runs.save_tensors(self.run_dir / runs.WEIGHTS, self.model.state_dict(), {"step": str(self.step)})
        runs.save_tensors(self.run_dir / runs.STATE, tensors, {"step": str(self.step)})
        runs.write_json(self.run_dir / runs.STATE_JSON, meta)

    def fit(self, progress: bool = True) -> None:
        total = self.cfg.train.epochs * self.steps_per_epoch
        self.model.train()
        with tqdm(total=total, disable=not progress, unit="step", dynamic_ncols=True, leave=False) as bar:
            while self.epoch < self.cfg.train.epochs:
                bar.set_description(f"epoch {self.epoch + 1}/{self.cfg.train.epochs}")
                train_terms = self.run_epoch(bar)
                if self.epoch % self.cfg.train.eval_every == 0 or self.epoch == self.cfg.train.epochs:
                    self.evaluate_epoch(train_terms)
                    self.checkpoint()
        self.model.eval()

    def finish(self, data: data_mod.Data) -> dict:
        """Final held-out metrics (with the IS log-likelihood), summary.json and pictures."""
        summary = evaluate.evaluate(self.model, self.test_x, self.cfg.train.eval_k)
        summary.update(
            epochs=self.epoch,
            steps=self.step,
            train_seconds=self.metrics[-1]["seconds"] if self.metrics else 0.0,
            parameters=sum(p.numel() for p in self.model.parameters()),
        )
        warning = objectives.schedule_warning(self.cfg.objective, self.step)
        if warning:  # a warm-up longer than training: warn, don't fail
            warnings.warn(warning, stacklevel=2)
            summary["warnings"] = [warning]
        runs.write_json(self.run_dir / runs.SUMMARY, summary)
        pictures.save_samples(self.model, self.run_dir / "samples.png", seed=self.cfg.seed)
        pictures.save_reconstructions(self.model, self.test_x, self.run_dir / "reconstructions.png")
        return summary


def train(cfg: Config, out: str | Path, overwrite: bool = False, hooks: Iterable[Hook] = (), progress: bool | None = None) -> Path:
    """Train the configured VAE; returns the run folder (config, metrics, checkpoint, summary, pictures)."""
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    data = data_mod.load(cfg.data)
    model = build(cfg, data.x_shape).to(device)
    model.head.check_data(data.train, "the training set")
    model.head.check_data(data.test, "the test set")
    run_dir = runs.prepare_run_dir(out, overwrite)
    runs.write_json(run_dir / runs.CONFIG, cfg.to_dict())
    trainer = Trainer(cfg, model, data, run_dir, hooks)
    trainer.fit(cfg.train.progress if progress is None else progress)
    trainer.finish(data)
    return run_dir
