"""``reparam export``: the programs reproduce the networks and q's and p's parameters; the JSON names them."""

from __future__ import annotations

import json

import pytest
import torch

from reparam import latents, runs
from reparam.share import export
from tests.conftest import tiny_config
from tests.helpers import assert_user_error, in_process


def reference(model, x: torch.Tensor, z: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """What each program must return, from the model's own distributions."""
    with torch.no_grad():
        q = model.posterior(x)
        p = model.likelihood(z)
        return {
            "encoder": {"raw": model.encode(x), "q_loc": q.base_dist.loc, "q_scale": q.base_dist.scale, "point": model.point(q)},
            "decoder": {"raw": p.base_dist.logits.flatten(1), "px_logits": p.base_dist.logits, "mean": model.decode_mean(z)},
        }


def check_exported(run, out, run_program) -> None:
    """Each program's outputs, for batches of 5 and 1, against the model's; the JSON against the prior."""
    model = runs.load(run)
    info = json.loads((out / "parameterization.json").read_text())
    for n in (5, 1):
        x, z = torch.rand(n, *model.x_shape).round(), torch.randn(n, model.latent_dim)
        want = reference(model, x, z)
        for name, given in (("encoder", x), ("decoder", z)):
            got = run_program(out / info[name]["file"], given)
            assert list(info[name]["outputs"]) == list(want[name])  # the JSON's names, in the programs' order
            for key, value in zip(info[name]["outputs"], got):
                torch.testing.assert_close(torch.as_tensor(value), want[name][key], rtol=1e-5, atol=1e-5)
    assert info["posterior"]["distribution"]["base"]["parameters"] == {"loc": "q_loc", "scale": "q_scale"}
    prior = model.family.prior().base_dist
    assert info["prior"]["values"] == {"loc": prior.loc.tolist(), "scale": prior.scale.tolist()}


def test_torch_export_reproduces_the_networks(tiny_run, tmp_path, capsys):
    out = tmp_path / "torch"
    assert in_process(capsys, "export", str(tiny_run), "--format", "torch", "--out", str(out)).returncode == 0
    check_exported(tiny_run, out, lambda path, given: torch.export.load(path).module()(given))
    assert_user_error(in_process(capsys, "export", str(tiny_run), "--format", "torch", "--out", str(out)), "already exists")


@pytest.mark.slow  # about 9 s: onnxscript's import and torch's operator table
def test_onnx_encoder_reproduces_the_posterior(tiny_run):
    """The encoder only: each ONNX conversion takes seconds (torch's exporter builds its operator table
    at every call), and the decoder's goes through the same code as the encoder's."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = runs.load(tiny_run)
    module, example, inputs, outputs = export.programs(model)["encoder"]
    session = ort.InferenceSession(export.export_program(module, example, inputs, outputs, "onnx"))
    assert [o.name for o in session.get_outputs()] == outputs == ["raw", "q_loc", "q_scale", "point"]
    for n in (5, 1):
        x = torch.rand(n, *model.x_shape).round()
        want = reference(model, x, torch.zeros(n, model.latent_dim))["encoder"]
        for key, value in zip(outputs, session.run(None, {"x": x.numpy()})):
            torch.testing.assert_close(torch.as_tensor(value), want[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overrides, needle", [
    (["latent.flow=planar"], "latent.flow=planar"), (["model.stochastic=[2]"], "model.stochastic"), (["model.condition=label"], "model.condition=label"),
])  # fmt: skip
def test_models_that_are_not_one_encoder_and_one_decoder_are_refused(overrides, needle):
    assert export.refusal(tiny_config()) is None
    assert needle in export.refusal(tiny_config(*overrides))


@pytest.mark.parametrize("name", latents.names())
def test_every_familys_posterior_is_written_as_tensors_that_follow_the_encoder(name):
    """The outputs that stand for q(z|x) are named once each, and some of them move with the raw numbers."""
    family = latents.get(name, 4)
    (info, first), (_, second) = (export.leaves(family.posterior(torch.randn(3, family.raw_size)), "q_") for _ in range(2))
    names = [n for n, _ in first]
    assert names == [n for n, _ in second] and len(set(names)) == len(names) and json.dumps(info)
    assert any(a.shape[:1] == (3,) and not torch.equal(a, b) for (_, a), (_, b) in zip(first, second))
