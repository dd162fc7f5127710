"""Config: TOML files, key=value overrides, typed validation, the resolved dict."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reparam import config
from reparam.errors import ConfigError


def test_defaults_validate_and_round_trip():
    cfg = config.load()
    again = config.from_dict(cfg.to_dict())
    assert again == cfg
    assert cfg.data.name == "digits" and cfg.latent.family == "gaussian"


def test_overrides_parse_toml_literals():
    cfg = config.load(None, ["latent.dim=50", "model.hidden=[200,200]", "train.lr=3e-4", "data.name=mnist", "seed=3"])
    assert cfg.latent.dim == 50 and cfg.model.hidden == [200, 200]
    assert cfg.train.lr == 3e-4 and cfg.data.name == "mnist" and cfg.seed == 3


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('seed = 4\n[latent]\ndim = 12\n[train]\nepochs = 3\n')
    cfg = config.load(f, ["train.epochs=5"])
    assert (cfg.seed, cfg.latent.dim, cfg.train.epochs) == (4, 12, 5)


def test_int_accepted_for_float():
    assert config.load(None, ["train.lr=1"]).train.lr == 1.0


def test_component_options_are_kept_flat_in_the_resolved_dict():
    cfg = config.load(None, ["likelihood.name=gaussian", "likelihood.scale=0.1"])
    assert cfg.likelihood.options == {"scale": 0.1}
    assert cfg.to_dict()["likelihood"] == {"name": "gaussian", "scale": 0.1}


@pytest.mark.parametrize(
    "override, needle",
    [
        ("latent.dimm=3", "latent.dim"),  # names the valid keys
        ("train.epochz=3", "train.epochs"),
        ("nosuch.key=1", "valid keys"),
        ("train.epochs=ten", "train.epochs must be of type int"),
        ("train.epochs=1.5", "train.epochs must be of type int"),
        ("train.progress=3", "train.progress must be of type bool"),
        ("latent.dim=0", "latent.dim must be a positive integer"),
        ("train.lr=-1", "train.lr must be a finite rate > 0"),
        ("train.lr=inf", "train.lr must be a finite rate > 0"),
        ("train.lr_schedule=linear", "train.lr_schedule must be one of constant, cosine, exponential; got 'linear'"),
        ("train.lr_final=-1e-4", "train.lr_final must be a finite rate >= 0"),
        ("train.lr_final=nan", "train.lr_final must be a finite rate >= 0"),
        ("train.lr_schedule=exponential", "train.lr_final must be > 0 for train.lr_schedule=exponential"),
        ("train.lr_final=1e-4", "train.lr_final applies to train.lr_schedule=cosine or exponential"),
        ("model.hidden=5", "model.hidden must be a list"),
        ("model.hidden=[0]", "model.hidden sizes must be positive"),
        ("data.binarize=maybe", "data.binarize must be one of"),
        ("latent.family=nope", "unknown latent family 'nope'; valid: bernoulli"),
        ("likelihood.name=poisson", "unknown likelihood 'poisson'; valid: bernoulli"),
        ("likelihood.scale=0.1", "likelihood.scale"),  # bernoulli takes no scale
        ("objective.name=nope", "unknown objective"),
        ("train.device=tpu", "train.device must be one of"),
        ("justtext", "is not key=value"),
        ("a.b.c=1", "unknown config key"),
    ],
)
def test_bad_values_are_rejected_with_a_useful_line(override, needle):
    with pytest.raises(ConfigError) as e:
        config.load(None, [override])
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_toml_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[latent\ndim = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(f)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml")


@settings(max_examples=60, deadline=None)
@given(
    dim=st.integers(1, 512),
    hidden=st.lists(st.integers(1, 1024), min_size=0, max_size=4),
    lr=st.floats(1e-6, 1.0),
    epochs=st.integers(1, 10_000),
)
def test_valid_overrides_round_trip(dim, hidden, lr, epochs):
    cfg = config.load(None, [f"latent.dim={dim}", f"model.hidden={hidden}", f"train.lr={lr!r}", f"train.epochs={epochs}"])
    assert (cfg.latent.dim, cfg.model.hidden, cfg.train.lr, cfg.train.epochs) == (dim, hidden, lr, epochs)
    assert config.from_dict(cfg.to_dict()) == cfg


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=20))
def test_arbitrary_values_never_crash_uncontrolled(text):
    """Any string for any typed key either validates or raises ConfigError."""
    for key in ("latent.dim", "train.lr", "model.hidden", "data.name", "train.progress"):
        try:
            config.load(None, [f"{key}={text}"])
        except ConfigError:
            pass
