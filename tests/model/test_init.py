"""model.init: He's start against its definition, torch's start untouched, and ``auto`` per kind of model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reparam import config
from reparam import data as data_mod
from reparam.evaluate import diagnostics
from reparam.model import build
from reparam.model.build import assemble
from reparam.model.init import dense_layers

Z = 4.0


def built(*overrides: str, seed: int = 0, classes: int | None = None):
    cfg = config.load(None, ["model.hidden=[300,200]", "latent.dim=40", *overrides])
    torch.manual_seed(seed)
    return build(cfg, (8, 8), classes=classes)


def test_he_draws_every_dense_weight_from_n_0_2_over_fan_in():
    """The sample variance of each layer's weights within 4 SE of 2 / n_in (SE of a sample variance:
    sigma^2 sqrt(2 / (n - 1))), mean within 4 SE of 0; biases keep torch's uniform start."""
    model = built("model.init=he", "model.stochastic=[10]")
    layers = dense_layers(model)
    assert len(layers) == 3 + 3 + 3 + 3  # encoder, decoder, up and down networks
    for layer in layers:
        w = layer.weight.detach().double().flatten()
        var = 2.0 / layer.in_features
        assert abs(float(w.var()) - var) < Z * var * math.sqrt(2 / (len(w) - 1)), layer
        assert abs(float(w.mean())) < Z * math.sqrt(var / len(w)), layer
        assert float(layer.bias.detach().abs().max()) <= 1 / math.sqrt(layer.in_features)


def test_torch_start_is_the_assembled_model_bit_for_bit():
    """model.init=torch draws nothing more: the weights equal the networks as torch built them."""
    cfg = config.load(None, ["model.init=torch", "latent.flow=iaf"])
    torch.manual_seed(3)
    a = build(cfg, (8, 8)).state_dict()
    torch.manual_seed(3)
    b = assemble(cfg, (8, 8)).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "overrides,classes,expected",
    [([], None, "he"), (["latent.flow=iaf"], None, "he"), (["model.stochastic=[8]"], None, "he"),
     (["latent.flow=planar"], None, "torch"), (["model.condition=label"], 10, "torch"),
     (["model.arch=conv", "model.channels=[8]"], None, "torch"), (["model.arch=conv", "model.channels=[8]", "model.stochastic=[4]"], None, "torch")],
    ids=["vae", "iaf", "hierarchy", "planar", "conditional", "conv", "conv-hierarchy"],
)  # fmt: skip
def test_auto_starts_each_kind_of_model_as_measured(overrides, classes, expected):
    auto = built(*overrides, classes=classes)
    chosen = built(*overrides, f"model.init={expected}", classes=classes)
    a, b = auto.state_dict(), chosen.state_dict()
    if "latent.flow=iaf" in overrides:  # the encoder rows of the IAF's context keep torch's start under auto
        rows = auto.encoder.net[-1].weight[auto.family.raw_size :]
        assert float(rows.detach().abs().max()) <= 1 / math.sqrt(auto.encoder.net[-1].in_features)
        key = "encoder.net.4.weight"
        a, b = {k: v for k, v in a.items() if k != key}, {k: v for k, v in b.items() if k != key}
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_network_passed_in_is_left_as_it_is():
    cfg = config.load(None, ["model.init=he"])
    encoder = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 16))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model = build(cfg, (8, 8), encoder=encoder)
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())


def test_a_new_model_tells_images_apart_from_its_first_step():
    """The root of the VampPrior's collapse: with torch's start the encoder's posterior means barely
    move between digits (no unit with Cov_x E_q[z_d] > 0.01), and a prior that can follow the
    posterior settles where the code is ignored. Under the default start every unit is active."""
    data = data_mod.load(config.DataConfig(name="digits"))
    x = data.test[:300]
    torch_start = diagnostics.activity(built("model.init=torch", "prior.name=vamp", "prior.components=20"), x)
    default = diagnostics.activity(built("prior.name=vamp", "prior.components=20"), x)
    assert int((torch_start > diagnostics.ACTIVE_THRESHOLD).sum()) == 0
    assert int((default > diagnostics.ACTIVE_THRESHOLD).sum()) == 40


# --- model.output_bias -------------------------------------------------------------------------


def output_bias_of(model) -> torch.Tensor:
    return [m for m in model.decoder.modules() if isinstance(m, nn.Linear)][-1].bias.detach().clone()


@pytest.mark.parametrize(
    "overrides, set_",
    [
        (["model.stochastic=[4]"], True),  # auto: a hierarchy starts at the data's mean
        ([], False),  # auto: a one-layer VAE keeps the bias as model.init drew it
        (["model.output_bias=data"], True),
        (["model.stochastic=[4]", "model.output_bias=init"], False),
        (["model.output_bias=data", "likelihood.name=gaussian"], False),  # a head whose raw numbers the mean does not fix
    ],
)
def test_the_decoders_output_bias_starts_at_the_training_datas_mean_where_asked(overrides, set_):
    cfg = config.load(None, ["latent.dim=8", *overrides])
    x = data_mod.load(cfg.data).train
    torch.manual_seed(0)
    with_data = build(cfg, x.shape[1:], train_x=x)
    torch.manual_seed(0)
    without = build(cfg, x.shape[1:])
    bias = output_bias_of(with_data)
    if not set_:
        assert torch.equal(bias, output_bias_of(without))
        return
    mean = x.mean(0).flatten().clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(torch.sigmoid(bias), mean, rtol=1e-5, atol=1e-7)
    assert not torch.equal(bias, output_bias_of(without))
    assert all(torch.equal(a, b) for (n, a), (_, b) in zip(with_data.state_dict().items(), without.state_dict().items()) if n != "decoder.net.4.bias")


def test_a_config_written_before_model_output_bias_reads_as_init():
    cfg = config.load(None, ["model.stochastic=[4]"]).to_dict()
    del cfg["model"]["output_bias"]
    assert config.from_saved(cfg).model.output_bias == "init"
    cfg["model"]["output_bias"] = "data"
    assert config.from_saved(cfg).model.output_bias == "data"
