"""The model contract: every model kind offers every member of ``Model`` with the documented
shapes and label defaults, and no module outside ``reparam/model/`` asks which kind of model
it holds."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from reparam import evaluate
from reparam.model import build
from reparam.model.contract import Model
from tests.conftest import tiny_config

B, C, X_SHAPE = 5, 3, (8, 8)

#: (id, overrides, classes, given labels): every model kind.
KINDS = [
    ("plain", [], 0, False),
    ("flow", ["latent.flow=planar"], 0, False),
    ("learned prior", ["prior.name=mog", "prior.components=3"], 0, False),
    ("hierarchy", ["model.stochastic=[2]"], 0, False),
    ("hierarchy, mixture top prior", ["model.stochastic=[2]", "prior.name=mog", "prior.components=3"], 0, False),
    ("conditional", ["model.condition=label"], C, False),
    ("M2", ["model.condition=label", "data.labeled=30"], C, False),
    ("labelled view", ["model.condition=label", "prior.name=label"], C, True),
]


def kind(overrides: list[str], classes: int, view: bool):
    model = build(tiny_config(*overrides), X_SHAPE, classes=classes or None)
    return model.given(torch.arange(B) % C) if view else model


@pytest.mark.parametrize("overrides,classes,view", [k[1:] for k in KINDS], ids=[k[0] for k in KINDS])
def test_every_model_kind_honours_the_contract(overrides, classes, view):
    model = kind(overrides, classes, view)
    assert isinstance(model, Model)
    assert model.classes == classes and model.class_names is None and model.semi_supervised == ("data.labeled=30" in overrides)
    assert model.latent_dim == sum(model.layer_dims) and tuple(model.x_shape) == X_SHAPE and isinstance(model.auto_init, str)
    assert model.per_example_prior == view
    labelled = model.given(torch.arange(B) % C) if classes else model
    assert classes or labelled is model  # a model without labels ignores them
    x = torch.rand(B, *X_SHAPE).bernoulli()
    assert labelled.encode(x).shape == (B, model.raw_size)
    q = labelled.posterior(x)
    assert q.batch_shape == (B,) and q.event_shape == (model.latent_dim,)
    z = q.rsample((2,))  # (K, B, D)
    assert labelled.likelihood(z).batch_shape == (2, B) and labelled.prior().event_shape == (model.latent_dim,)
    assert labelled.kl(q, z).shape == (B,)
    means, kls = labelled.layer_statistics(q, z)
    assert kls.shape == (B, len(model.layer_dims)) and [m.shape for m in means][-1] == (B, model.layer_dims[-1])
    groups = labelled.log_ratio_groups(q, z)
    assert (groups is None) == (len(model.layer_dims) == 1)
    top = labelled.point(q)
    assert top.shape == labelled.unit_mean(q).shape == (B, model.layer_dims[-1])
    assert labelled.decode_mean(top).shape == (B, *X_SHAPE)
    assert labelled.rows(slice(0, 2)).posterior(x[:2]).batch_shape == (2,)
    assert {"encoder", "decoder"} <= set(model.parameter_groups())
    if model.semi_supervised:
        assert model.label_posterior(x).probs.shape == (B, C)
    else:
        with pytest.raises(TypeError, match="classifier"):
            model.label_posterior(x)


@pytest.mark.parametrize("overrides,classes,view", [k[1:] for k in KINDS], ids=[k[0] for k in KINDS])
def test_the_thread_trial_and_the_held_out_model_need_no_kind_check(overrides, classes, view):
    """What the training loop's ``train.threads=auto`` trial and held-out evaluation call on any model."""
    model, n = kind(overrides, classes, view), 4
    trial = model.given(torch.zeros(n, dtype=torch.long))
    out = trial.encode(torch.rand(n, *X_SHAPE)), trial.decode_mean(trial.sample_prior(n))
    assert out[0].shape == (n, model.raw_size) and out[1].shape == (n, *X_SHAPE)
    test_y = torch.arange(n) % C
    held_out = model if model.semi_supervised else model.given(test_y)
    assert math.isfinite(evaluate.elbo_terms(held_out, torch.rand(n, *X_SHAPE).bernoulli())["elbo"])


def test_a_hierarchy_groups_each_layers_inference_network():
    model = build(tiny_config("model.stochastic=[3, 2]"), X_SHAPE)
    groups = model.parameter_groups()
    assert [g for g in groups if g.startswith("encoder.layer")] == ["encoder.layer1", "encoder.layer2", "encoder.layer3"]
    every = {id(p) for g in ("encoder", "decoder") for p in groups[g]}
    assert every == {id(p) for p in model.parameters()} and len(every) == sum(len(groups[g]) for g in ("encoder", "decoder"))


# --- no kind checks outside reparam/model/ ---------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[2] / "reparam"

MODEL_CLASSES = {"VAE", "HierarchicalVAE", "ConditionalVAE", "LabelledView", "Model"}
CHECKS = {"hasattr", "getattr", "isinstance", "cast"}
DATA_TYPES = {"dict", "list", "tuple", "str", "int", "float", "bool"}  # a config section named model is a dict


def names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def kind_checks(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """``hasattr``/``getattr``/``isinstance``/``cast`` calls whose subject is a model (a name or
    attribute containing "model") or whose type is a model class: "path:line: call"."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CHECKS and len(node.args) >= 2):
            continue
        subject, kind_ = (node.args[1], node.args[0]) if node.func.id == "cast" else (node.args[0], node.args[1])
        about_model = any("model" in n.lower() for n in names(subject)) and not names(kind_) & DATA_TYPES
        if about_model or names(kind_) & MODEL_CLASSES:
            out.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_the_checker_finds_a_kind_check(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("ok = isinstance(cfg, dict) or isinstance(model, dict)\nif hasattr(self.model, 'given'): pass\ncast(ConditionalVAE, m)\n")
    assert kind_checks(src, tmp_path) == ["m.py:2: hasattr(self.model, 'given')", "m.py:3: cast(ConditionalVAE, m)"]


def test_no_module_outside_model_asks_which_kind_of_model_it_holds():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if rel.startswith("reparam/model/"):
            continue
        found += kind_checks(path)
    assert not found, "ask the model through reparam.model.contract.Model instead:\n" + "\n".join(found)
