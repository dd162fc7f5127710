"""Training memory estimated before the model is built, and sizes that cannot fit refused in one line.

No test here allocates a large model: the estimate runs on the meta device, and the memory a
machine has left is monkeypatched."""

from __future__ import annotations

import math
import re
import time

import pytest
import torch

from reparam import objectives
from reparam.errors import ConfigError
from reparam.model import build
from reparam.train import memory
from tests.conftest import TINY, tiny_config
from tests.helpers import assert_user_error, in_process

X_SHAPE = (8, 8)
CLASSES = 10

#: Configs across what sizes a model: flows (extrapolated past two steps), priors, hierarchies,
#: convolutions, conditional and semi-supervised models, a table, an objective with weights.
SHAPES = {
    "mlp": [],
    "iaf": ["latent.flow=iaf", "latent.flow_steps=5"],
    "planar": ["latent.flow=planar", "latent.flow_steps=7"],
    "planar-default": ["latent.flow=planar"],
    "mog": ["prior.name=mog", "prior.components=30"],
    "vamp": ["prior.name=vamp", "prior.components=20"],
    "hierarchy": ["model.stochastic=[3,2]"],
    "hierarchy-hidden": ["model.stochastic=[6]", "model.stochastic_hidden=[17]"],
    "conv": ["model.arch=conv", "model.channels=[4,8]", "model.hidden=[16]"],
    "conditional": ["model.condition=label", "prior.name=label"],
    "m2": ["model.condition=label", "data.labeled=100"],
    "logistic": ["likelihood.name=discretized_logistic", "data.binarize=none"],
    "nvil": ["objective.estimator=score", "objective.baseline=nvil"],
    "iaf-conditional": ["model.condition=label", "latent.flow=iaf", "latent.flow_steps=4"],
    "kumaraswamy": ["latent.family=kumaraswamy"],
    "spherical": ["latent.family=spherical"],
}


def built_parameters(cfg) -> int:
    model = build(cfg, X_SHAPE, classes=CLASSES)
    objective = objectives.Objective(cfg.objective, X_SHAPE)
    return sum(p.numel() for p in [*model.parameters(), *objective.parameters()])


@pytest.mark.parametrize("name", SHAPES)
def test_the_parameter_count_is_that_of_the_built_model(name):
    cfg = tiny_config("model.hidden=[24,12]", *SHAPES[name])
    assert memory.estimate(cfg, X_SHAPE, classes=CLASSES).parameters == built_parameters(cfg)


def test_a_tables_parameter_count_is_that_of_its_built_model():
    cfg = tiny_config("data.name=table", "data.path=sklearn:iris", "data.binarize=none")
    layout = ["real", "real", "real", "real", "categorical:3"]
    model = build(cfg, (7,), columns=layout)
    assert memory.estimate(cfg, (7,), columns=layout).parameters == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("flow", ["iaf", "planar"])
def test_many_flow_steps_are_extrapolated_exactly_and_fast(flow):
    """Past two steps a flow is measured at one and two steps: the same numbers as measuring it
    whole, and 100,000 steps (a 100M-parameter IAF) take no longer than three."""
    cfg = tiny_config(f"latent.flow={flow}", "latent.flow_steps=6")
    est = memory.estimate(cfg, X_SHAPE)
    parameters, buffers, saved = memory.measure(cfg, X_SHAPE, cfg.train.batch_size)
    assert (est.parameters, est.activations) == (parameters, math.ceil(memory.ACTIVATION_SLACK * saved))
    start = time.perf_counter()
    huge = memory.estimate(tiny_config(f"latent.flow={flow}", "latent.flow_steps=100000"), X_SHAPE)
    assert time.perf_counter() - start < 5
    assert huge.parameters > 100 * est.parameters


def test_activations_grow_with_the_batch_and_k():
    base = memory.estimate(tiny_config("train.batch_size=50"), X_SHAPE)
    assert memory.estimate(tiny_config("train.batch_size=100"), X_SHAPE).activations == pytest.approx(2 * base.activations, rel=0.01)
    k2, k8 = (memory.estimate(tiny_config("train.batch_size=50", f"objective.k={k}"), X_SHAPE).activations for k in (2, 8))
    assert k8 - base.activations == pytest.approx(7 * (k2 - base.activations), rel=0.01) and k2 > base.activations  # the decoder's share
    assert memory.estimate(tiny_config("train.batch_size=100"), X_SHAPE).parameters == base.parameters


@pytest.mark.parametrize("family", ["kumaraswamy", "spherical"])
def test_a_step_that_reads_values_is_measured_by_its_networks(family, monkeypatch):
    """A KL or a sampler that branches on values cannot run on the meta device, nor an objective of
    your own that reads them: the encoder on the batch and the decoder on its draws stand in."""
    cfg = tiny_config(f"latent.family={family}")
    networks = memory.estimate(cfg, X_SHAPE).activations
    assert networks > 0
    elbo = objectives.OBJECTIVES["elbo"]

    def reads_values(model, x, **kwargs):
        bound, terms = elbo(model, x, **kwargs)
        return bound * float(bound.mean() > 0), terms

    monkeypatch.setitem(objectives.OBJECTIVES, "elbo", reads_values)
    assert memory.estimate(tiny_config(), X_SHAPE).activations == networks


def test_the_estimate_leaves_the_random_state_alone():
    torch.manual_seed(3)
    before = torch.get_rng_state()
    memory.estimate(tiny_config("prior.name=vamp", "latent.family=beta"), X_SHAPE)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.distributions.Distribution._validate_args  # validation back on (the tests' setting)


def test_weights_and_their_copies_are_counted():
    cfg = tiny_config()
    est = memory.estimate(cfg, X_SHAPE)
    with_ema = memory.estimate(tiny_config("train.ema=0.999"), X_SHAPE)
    weight = 4 * est.parameters
    assert est.resident == memory.RESIDENT_COPIES * weight and with_ema.resident == est.resident + weight
    assert est.checkpoint == 6 * weight and with_ema.checkpoint == 8 * weight
    assert est.total == memory.FIXED + est.resident + max(est.activations, est.checkpoint)


def test_available_memory_reads_meminfo_and_a_containers_limit(tmp_path, monkeypatch):
    (tmp_path / "meminfo").write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    (tmp_path / "memory.max").write_text("4294967296\n")
    (tmp_path / "memory.current").write_text("1073741824\n")
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(memory, "CGROUP", tmp_path)
    assert memory.available(torch.device("cpu")) == (3 * 2**30, "room under the container's memory limit")
    (tmp_path / "memory.max").write_text("max\n")
    assert memory.available(torch.device("cpu")) == (8000000 * 1024, "available memory")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun's processes on one machine share it
    assert memory.available(torch.device("cpu"))[0] == 2000000 * 1024


def test_a_gpu_offers_its_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (5 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a GPU")
    assert memory.available(torch.device("cuda", 0)) == (5 * 2**30, "free on a GPU")


def test_a_gpu_also_holds_the_data(monkeypatch):
    cfg = tiny_config()
    need = memory.estimate(cfg, X_SHAPE).total
    monkeypatch.setattr(memory, "available", lambda device: (need + 2**20, "free on a GPU"))
    assert memory.check(cfg, X_SHAPE, torch.device("cpu"), data_bytes=2**30) is not None  # in memory already
    assert memory.check(cfg, X_SHAPE, torch.device("cuda", 0), data_bytes=2**19) is not None
    with pytest.raises(ConfigError, match=r"1.07 GB of data\), more than the .* of free on a GPU on cuda"):
        memory.check(cfg, X_SHAPE, torch.device("cuda", 0), data_bytes=2**30)


def little_memory(monkeypatch, megabytes: int) -> None:
    monkeypatch.setattr(memory, "available", lambda device: (megabytes * 2**20, "available memory"))


@pytest.mark.parametrize(
    "settings, keys",
    [(["latent.flow=iaf", "latent.flow_steps=100000"], "latent.flow_steps"),
     (["model.hidden=[20000,20000]"], "model.hidden"),
     (["prior.name=vamp", "prior.components=2000000"], "prior.components"),
     (["model.stochastic=[4000,4000]", "model.stochastic_hidden=[20000]"], "model.stochastic"),
     (["train.batch_size=1000", "objective.k=5000"], "train.batch_size, objective.k")],
)  # fmt: skip
def test_sizes_that_cannot_fit_are_refused_in_one_line_before_the_run_folder(settings, keys, tmp_path, capsys, monkeypatch):
    little_memory(monkeypatch, 1024)
    out = tmp_path / "run"
    proc = in_process(capsys, "train", *TINY, *settings, "--out", str(out))
    assert_user_error(proc, "training this model would run out of memory: it needs about ")
    assert "more than the 1.07 GB of available memory on cpu" in proc.stderr and keys in proc.stderr
    assert not out.exists()


def test_the_flow_of_the_issue_is_refused_with_its_estimate(tmp_path, capsys, monkeypatch):
    """latent.flow_steps=100000 on the digits (8 latent dims, the default networks): about 107M
    parameters, 7 GB or more to train; refused on a machine with 4 GB left."""
    little_memory(monkeypatch, 4096)
    proc = in_process(capsys, "train", "latent.flow=iaf", "latent.flow_steps=100000", "train.progress=false", "--out", str(tmp_path / "run"))
    assert_user_error(proc, "training this model would run out of memory")
    found = re.search(r"needs about ([\d.]+) GB \(([\d,]+) parameters", proc.stderr)
    assert found and float(found[1]) > 7 and int(found[2].replace(",", "")) > 100_000_000
    assert not (tmp_path / "run").exists()


def test_what_fits_trains(tmp_path, monkeypatch):
    from reparam.train import train

    little_memory(monkeypatch, 200)  # the tiny model needs ~130 MB
    assert (train(tiny_config("train.epochs=1"), tmp_path / "run") / "model.safetensors").is_file()
