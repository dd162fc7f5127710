"""Your own data: a Hugging Face ``datasets`` dataset (``data.name=hf``, built here, offline),
images handed to ``train(..., data=...)`` in Python, and ``data.shard`` (each process's part)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import reparam
from reparam import config, data, distributed, evaluate, runs, train
from reparam.errors import ConfigError, DataError
from reparam.train.batches import Batches
from tests.conftest import TINY
from tests.helpers import assert_user_error, in_process

datasets = pytest.importorskip("datasets")
FAST = [*TINY, "train.epochs=1", "train.eval_k=4", "model.hidden=[16]", "latent.dim=2"]


def pictures(n: int, seed: int) -> dict:
    """n 8x8 grey PNG-backed images, two classes (class 1 the brighter), and a number per row."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = [Image.fromarray(rng.integers(0, 128, (8, 8), dtype=np.uint8) + np.uint8(127 * c)) for c in labels]
    return {"image": images, "label": labels.tolist(), "size": rng.random(n).tolist()}


def save_dataset(folder: Path) -> Path:
    """A DatasetDict (train: 40 rows, test: 10) with an Image, a ClassLabel and a float column, saved to disk."""
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["dim", "bright"]), "size": datasets.Value("float32")})
    parts = {"train": pictures(40, 0), "test": pictures(10, 1)}
    datasets.DatasetDict({k: datasets.Dataset.from_dict(v, features=features) for k, v in parts.items()}).save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    return save_dataset(tmp_path_factory.mktemp("hf") / "pets")


def test_a_saved_dataset_trains_evaluates_and_samples_from_the_command_line(saved, tmp_path, capsys):
    """data.name=auto picks the saved folder; the images are the PNGs' levels, the labels and class names the ClassLabel's."""
    d = data.load(config.load(None, [f"data.path={saved}", "data.binarize=none"]).data)
    split = datasets.load_from_disk(str(saved))
    assert d.name == "pets" and d.classes == ["dim", "bright"] and d.train.dtype == torch.uint8
    assert torch.equal(d.train, torch.from_numpy(np.stack([np.asarray(im) for im in split["train"]["image"]])))
    assert torch.equal(d.test_labels, torch.tensor(split["test"]["label"]))
    run = tmp_path / "run"
    proc = in_process(capsys, "train", *FAST, f"data.path={saved}", "model.condition=label", "--out", str(run))
    assert proc.returncode == 0, proc.stderr
    assert runs.read_config(run).data.name == "hf" and runs.read_json(run / runs.CLASSES)["classes"] == ["dim", "bright"]
    proc = in_process(capsys, "eval", str(run), "--k", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"n": 10' in proc.stdout
    proc = in_process(capsys, "sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png"))
    assert proc.returncode == 0 and (tmp_path / "s.png").stat().st_size > 0, proc.stderr


def test_a_saved_dataset_trains_evaluates_and_samples_from_python(saved, tmp_path):
    cfg = config.load(None, [*FAST, "data.name=hf", f"data.path={saved}", "data.test_split=", "data.test_fraction=0.25"])
    run = train.train(cfg, tmp_path / "run")
    model, source = reparam.load(run), data.load(cfg.data)
    assert (len(source.train), len(source.test)) == (30, 10)  # the train split, a quarter held out
    out = evaluate.evaluate(model, source.test, 4)
    assert out["n"] == 10 and np.isfinite(out["nll"])
    assert model.likelihood(model.prior().sample((3,))).sample().shape == (3, 8, 8)


def test_a_saved_dataset_is_also_a_table_of_its_chosen_columns(saved):
    cfg = config.load(None, ["data.name=table", f"data.path={saved}", 'data.columns=["size", "label"]'])
    d = data.load(cfg.data)
    assert cfg.likelihood.name == "table" and [c.name for c in d.columns.columns] == ["size", "label"]
    assert (len(d.train), len(d.test)) == (42, 8) and d.x_shape == (2,)  # both splits' 50 rows, split at random
    with pytest.raises(DataError, match="column 'image' holds Image values, not numbers or text; choose the table's columns with data.columns"):
        data.load(config.load(None, ["data.name=table", f"data.path={saved}"]).data)


def test_hf_errors_are_one_line(saved, tmp_path, capsys, monkeypatch):
    for overrides, needle in (
        (["data.image_column=picture"], "has no column 'picture' (data.image_column); its columns: image, label, size"),
        (["data.label_column=kind"], "has no column 'kind' (data.label_column); its columns: image, label, size"),
        (["data.test_split=valid"], "has no split 'valid'; its splits: train, test"),
        (["data.test_fraction=0.3"], "data.test_fraction does not apply"),
    ):
        assert_user_error(in_process(capsys, "train", *FAST, f"data.path={saved}", *overrides, "--out", str(tmp_path / "r")), needle)
    assert_user_error(in_process(capsys, "train", *FAST, "data.name=hf", f"data.path={tmp_path / 'none'}"), "cannot load the dataset")
    assert_user_error(in_process(capsys, "train", *FAST, "data.image_column=image"), "data.image_column applies to data.name=hf")
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    assert_user_error(in_process(capsys, "train", *FAST, f"data.path={saved}"), "pip install 'reparam[hf]'")
    assert not (tmp_path / "r").exists()


class Pairs(torch.utils.data.Dataset):
    """A torch Dataset of (image tensor, label) items."""

    def __init__(self, x: np.ndarray):
        self.x = torch.from_numpy(x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], torch.tensor(i % 3)


def test_python_data_tensors_arrays_and_a_dataset(tmp_path, capsys):
    """data= as a (train, test) pair of a tensor and an array, and as a labelled Dataset split by
    data.test_fraction: held like a file's images; the run records data.name=python, eval and --resume
    refuse it in one line, sample needs no data, and a resume in Python given the images again ends
    where an uninterrupted run does."""
    x = np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    cfg = config.load(None, FAST)
    run = train.train(cfg, tmp_path / "pair", data=(torch.from_numpy(x[:30]), x[30:]))
    assert runs.read_config(run).data.name == "python" and runs.read_json(run / runs.STATE_JSON)["x_shape"] == [8, 8]
    given = data.python.given((x[:30], x[30:]), config.load(None, [*FAST, "data.name=python"]).data)
    assert given.train.dtype == torch.uint8 and torch.equal(given.test, data.binarize(data.to_unit(x[30:], "x"), torch.Generator().manual_seed(data.TEST_BINARIZATION_SEED)))
    assert_user_error(in_process(capsys, "eval", str(run)), "this run's images were given in Python")
    assert_user_error(in_process(capsys, "train", "--resume", str(run), "train.epochs=2"), "this run's images were given in Python")
    assert in_process(capsys, "sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")).returncode == 0
    train.resume(run, epochs=2, data=(x[:30], x[30:]))  # the same images again: as if it had trained two epochs at once
    straight = train.train(config.load(None, [*FAST, "train.epochs=2"]), tmp_path / "straight", data=(x[:30], x[30:]))
    a, b = runs.load_tensors(run / runs.WEIGHTS), runs.load_tensors(straight / runs.WEIGHTS)
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg = config.load(None, [*FAST, "data.name=python", "data.test_fraction=0.25", "model.condition=label"])
    run = train.train(cfg, tmp_path / "dataset", data=Pairs(x))
    assert runs.read_json(run / runs.CLASSES)["classes"] == ["0", "1", "2"]
    split = data.python.given(Pairs(x), cfg.data)
    assert (len(split.train), len(split.test)) == (30, 10) and sorted(torch.cat([split.train_labels, split.test_labels]).tolist()) == sorted(np.arange(40) % 3)
    with pytest.raises(ConfigError, match="data= gives the images, and the config names data.name=file"):
        train.train(config.load(None, [*FAST, "data.name=file", "data.path=x.npy"]), tmp_path / "no", data=x)
    with pytest.raises(DataError, match="looks channels-first"):
        train.train(config.load(None, FAST), tmp_path / "no", data=np.zeros((10, 3, 8, 8), np.float32))
    assert not (tmp_path / "no").exists()


def fake_batches(x: torch.Tensor, rank: int, world: int, *overrides: str) -> Batches:
    cfg = config.load(None, ["data.shard=true", "train.batch_size=4", *overrides])
    trainer = types.SimpleNamespace(cfg=cfg, device=torch.device("cpu"), dist=distributed.Dist(rank, world), warn=print)
    return Batches(trainer, data.Data(x, x[:2].float(), None, None, "x"))


def test_shards_part_the_rows_and_keep_every_global_batch():
    """data.shard over 3 fake ranks, 23 images, batch 4: the parts are disjoint and cover the set,
    each rank holds only its part; at every step the ranks' shares make the global batch (the sizes
    of an unsharded run), every image once per epoch, each image's binarization a draw of the shared
    generator; a rank resumed from rank 0's state (a checkpoint's) continues with its own batches."""
    x = torch.arange(23 * 4, dtype=torch.uint8).reshape(23, 2, 2)  # pixel values name the image
    ranks = [fake_batches(x, r, 3) for r in range(3)]
    whole = Batches(types.SimpleNamespace(cfg=config.load(None, ["train.batch_size=4"]), device=torch.device("cpu"), dist=distributed.Dist(0, 3), warn=print),
                    data.Data(x, x[:2].float(), None, None, "x"))  # fmt: skip
    parts = [set(data.unit(b.train_x)[:, 0, 0].mul(255).round().int().div(4, rounding_mode="floor").tolist()) for b in ranks]
    assert sorted(i for p in parts for i in p) == list(range(23)) and [len(p) for p in parts] == [11, 6, 6]
    for _ in range(2):
        seen = []
        for _ in range(whole.steps_per_epoch):
            batches = [b.next() for b in ranks]
            whole.next()
            assert [b.global_batch for b in ranks] == [whole.global_batch] * 3 and sum(map(len, batches)) == whole.global_batch
            assert all(len(o) == len(range(whole.global_batch)[distributed.Dist(r, 3).shard(whole.global_batch)]) for r, o in enumerate(batches))
            seen += [len(o) for o in batches]
            assert all(torch.equal(ranks[0].gen.get_state(), b.gen.get_state()) for b in ranks)  # noise drawn in step
        assert sum(seen) == 23 and all(b.epoch_done() for b in ranks)
        for b in [*ranks, whole]:
            b.next_epoch()
    for b in ranks:
        b.next()
    state = ranks[0].state_dict()  # a checkpoint holds rank 0's state; rank 1 takes its own order back from it
    again = fake_batches(x, 1, 3)
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip([ranks[1].next() for _ in range(3)], [again.next() for _ in range(3)]))
    with pytest.raises(ConfigError, match="sharded over 3 processes"):
        fake_batches(x, 1, 2).load_state_dict(state)
