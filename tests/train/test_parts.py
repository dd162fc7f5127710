"""The loop's parts: a new piece of training state is one class and one line in ``loop.PARTS``."""

from __future__ import annotations

from typing import Any

import torch

from reparam import checkpoint
from reparam import data as data_mod
from reparam.model import build
from reparam.train import loop, resume, train
from reparam.train.parts import Part, merge
from tests.conftest import tiny_config

SHORT = ["train.epochs=2", "train.threads=1", "train.eval_k=5", "train.report=false", "train.checkpoint_every=5"]


class Counter(Part):
    """Counts the optimizer steps taken, in a tensor group and the header: what a new part looks like."""

    def __init__(self, trainer, data):
        super().__init__(trainer, data)
        self.n = torch.zeros((), dtype=torch.long)
        self.ends = 0

    def after_step(self, terms: dict[str, torch.Tensor]) -> None:
        self.n += 1

    def at_end(self) -> None:
        self.ends += 1

    def state_dict(self) -> dict[str, Any]:
        return {"counter": {"n": self.n.clone()}, "meta": {"counted": int(self.n)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n = state["counter"]["n"].clone()


def test_a_new_part_is_one_class_and_one_line_and_its_state_survives_a_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "PARTS", (*loop.PARTS, ("counter", Counter)))
    run = train(tiny_config(*SHORT, "train.epochs=1"), tmp_path / "run")
    tensors, meta = checkpoint.latest(run)
    steps = meta["step"]
    assert steps > 5 and int(tensors["counter.n"]) == meta["counted"] == steps
    resume(run, epochs=2)
    tensors, meta = checkpoint.latest(run)
    assert meta["step"] == 2 * steps and int(tensors["counter.n"]) == 2 * steps  # counted on from the checkpoint, not from 0


def test_parts_fill_shared_groups_key_by_key():
    state: dict[str, Any] = {"meta": {"step": 3}, "rng": {"torch": torch.zeros(1)}}
    merge(state, {"meta": {"epoch": 1}, "rng": {"data": torch.ones(1)}, "perm": torch.arange(3)})
    assert state["meta"] == {"step": 3, "epoch": 1} and set(state["rng"]) == {"torch", "data"} and torch.equal(state["perm"], torch.arange(3))


def test_no_two_parts_write_the_same_entry_of_the_checkpoint(tmp_path):
    """Every part of a run that uses them all (M2's labelled batches, the weight average) writes its
    own entries: the checkpoint is their disjoint union with the loop's own."""
    cfg = tiny_config(*SHORT, "model.condition=label", "data.labeled=50", "train.ema=0.9")
    data = data_mod.load(cfg.data)
    torch.manual_seed(0)
    trainer = loop.Trainer(cfg, build(cfg, data.x_shape, classes=len(data.classes)), data, tmp_path)
    for _ in range(3):
        trainer.advance()
    seen: dict[tuple[str, str], str] = {}
    for part in trainer.parts:
        for group, value in part.state_dict().items():
            for key in value if isinstance(value, dict) else [""]:
                assert (group, key) not in seen, f"{type(part).__name__} and {seen[(group, key)]} both write {group}.{key}"
                seen[(group, key)] = type(part).__name__
    assert {("perm", ""), ("lperm", ""), ("average", "0"), ("rng", "data"), ("rng", "torch"), ("meta", "average_updates")} <= set(seen)
    whole = trainer.state_dict()
    assert {g for g, _ in seen} | {"model", "objective", "optim"} == set(whole)
