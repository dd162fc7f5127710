"""Held-out evaluation during training: the validation (or test) terms, the collapse dashboard, M2's error, metrics.jsonl."""

from __future__ import annotations

import json
from dataclasses import replace

import torch

from .. import data as data_mod
from .. import distributed, evaluate, runs
from ..evaluate import diagnostics
from .parts import Part, Trainer


class HeldOut(Part):
    """The images (and labels) evaluated during training and the records of every evaluation so far.

    With ``data.validation`` those are the validation rows (records ``val_<term>``) and the
    test set waits for the final evaluation (``test_x``, ``test_y``; ``finish.py``), read
    once; without, they are the test set (records ``test_<term>``).

    ``model()`` is what held-out numbers describe: the model given the test labels (a
    conditional VAE), the model itself (M2, whose labels are latent; a plain VAE). Each
    evaluation appends a record to ``records`` and rewrites RUN/metrics.jsonl (rank 0), then
    calls the trainer's hooks with it. No checkpoint state: a resume reads the records back
    from metrics.jsonl (``reparam.train.run.resume``).
    """

    def __init__(self, trainer: Trainer, data: data_mod.Data):
        super().__init__(trainer, data)
        conditional = trainer.cfg.model.condition == "label"
        self.test_x = data.test.to(trainer.device)
        self.test_y = data.test_labels.to(trainer.device) if conditional and data.test_labels is not None else None
        self.split = "test" if data.valid is None else "val"  # what the records' keys say was evaluated
        self.x = self.test_x if data.valid is None else data.valid.to(trainer.device)
        labels = data.test_labels if data.valid is None else data.valid_labels
        self.y = labels.to(trainer.device) if conditional and labels is not None else None
        self.columns, self.nll_shift = data.columns, data.nll_shift  # a table's columns; None for images
        self.data = replace(data, train=torch.empty(0, *data.x_shape), train_labels=None, test=self.test_x, valid=None, valid_labels=None)  # for the report: no training images kept
        self.records: list[dict] = []

    def model(self):
        m = self.trainer.model
        return m if self.y is None or m.semi_supervised else m.given(self.y)

    def terms(self) -> dict[str, float]:
        """Mean held-out ELBO terms; distributed, each rank scores its shard and the sums are reduced."""
        t = self.trainer
        if not t.dist.enabled:
            return evaluate.elbo_terms(self.model(), self.x)
        rows = t.dist.shard(len(self.x))
        part = self.x[rows]  # never empty (distributed.check_sizes)
        means = evaluate.elbo_terms(self.model().rows(rows), part)
        keys = sorted(means)
        local = torch.tensor([means[k] * len(part) for k in keys], dtype=torch.float64, device=t.device)
        return {k: float(v) / len(self.x) for k, v in zip(keys, distributed.sum_(local))}

    def evaluate(self, train_terms: dict[str, float]) -> dict:
        """The record of this point of training: the counters, the rate of the next step (lr_final
        at the end), the training terms, the held-out terms and, on rank 0's images, the
        posterior-collapse dashboard (and M2's classification error)."""
        t = self.trainer
        record = {"epoch": t.batches.epoch, "step": t.step, "seconds": t.clock.elapsed(), "skipped_steps": t.skipped_steps}
        record.update(lr=t.opt.param_groups[0]["lr"], **train_terms)
        t.model.eval()
        with t.evaluating():
            test = self.terms()
            if t.dist.is_main:
                test.update(diagnostics.epoch_dashboard(t.model if self.y is None else t.model.given(self.y), self.x))
                if self.y is not None and t.model.semi_supervised:
                    test.update(evaluate.classification(t.model, self.x, self.y))
        t.model.train()
        record.update({f"{self.split}_{k}": v for k, v in test.items()})
        with t.evaluating():  # the parts see the weights just evaluated (``selection.py`` keeps the best)
            for part in t.parts:
                part.after_evaluation(record)
        self.records.append(record)
        if t.dist.is_main:
            payload = "".join(json.dumps(m, sort_keys=True) + "\n" for m in self.records)
            runs.atomic_write_bytes(t.run_dir / runs.METRICS, payload.encode())
            for hook in t.hooks:
                hook(record)
        return record
