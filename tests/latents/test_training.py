"""Every latent family end to end on the bundled digits, schedules, and bad family options on the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from reparam import latents, load
from reparam.train import train
from tests.conftest import TINY, tiny_config


def on_support(family: str, v: torch.Tensor) -> bool:
    """Whether the decoder's input v (*batch, D) lies where the family says it does."""
    if family in ("dirichlet", "dirichlet-laplace"):
        return bool((v >= 0).all() & ((v.sum(-1) - 1).abs() < 1e-5).all())
    if family == "categorical":  # 4 classes: one variable at latent.dim=4
        return bool((v >= 0).all() & ((v.sum(-1) - 1).abs() < 1e-5).all())
    if family == "spherical":
        return bool(((v.norm(dim=-1) - 1).abs() < 1e-5).all())
    if family in ("beta", "kumaraswamy", "bernoulli"):
        return bool(((v >= 0) & (v <= 1)).all())
    return bool(torch.isfinite(v).all())


@pytest.mark.parametrize("family", latents.names())
def test_train_every_family_on_digits(family, tmp_path):
    run = train(tiny_config(f"latent.family={family}", "train.epochs=1"), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    for key in ("elbo", "log_px_z", "kl", "nll", "nll_se"):
        assert math.isfinite(summary[key]), (key, summary[key])
    assert (run / "samples.png").is_file() and (run / "reconstructions.png").is_file()
    model = load(run)
    x = torch.rand(16, 8, 8).bernoulli()
    fam = model.family
    with torch.inference_mode():
        q = model.posterior(x)
        assert on_support(family, fam.decoder_input(q.sample((3,))))
        assert on_support(family, fam.decoder_input(fam.point(q)))
        assert on_support(family, fam.decoder_input(model.prior().sample((5,))))
        point = fam.point(q)  # the report's traversals and interpolations stay in the support
        assert on_support(family, fam.decoder_input(fam.traverse(point[0], 1, 5)))
        path = fam.interpolate(point[0], point[1], torch.linspace(0, 1, 5), fam.interpolation_kinds()[-1])
        assert on_support(family, fam.decoder_input(path))


def test_temperature_schedule_runs_through_the_generic_hook(tmp_path):
    """The trainer calls model.on_step; the annealed temperature is saved with the weights."""
    cfg = tiny_config("latent.family=bernoulli", "latent.anneal_rate=0.5", "latent.temperature_min=0.3", "train.epochs=1")
    run = train(cfg, tmp_path / "run")
    assert float(load(run).family.temperature_now) == pytest.approx(0.3)
    fam = latents.get("categorical", 4, temperature=2.0, temperature_min=0.5, anneal_rate=0.01)
    fam.on_step(100)
    assert float(fam.temperature_now) == pytest.approx(max(0.5, 2.0 * math.exp(-1.0)))


BAD = {
    "unknown family": (["latent.family=nope"], "unknown latent family 'nope'; valid: bernoulli"),
    "option the family lacks": (["latent.family=gaussian", "latent.temperature=0.5"], "latent.temperature"),
    "temperature <= 0": (["latent.family=bernoulli", "latent.temperature=0"], "latent.temperature must be a number > 0"),
    "dim 0": (["latent.family=beta", "latent.dim=0"], "latent.dim must be a positive integer"),
    "dirichlet dim 1": (["latent.family=dirichlet", "latent.dim=1"], "needs latent.dim >= 2"),
    "classes not dividing dim": (["latent.family=categorical", "latent.dim=6"], "latent.classes"),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Start every bad command at once (each pays the interpreter start-up), then collect them."""
    out = tmp_path_factory.mktemp("bad")
    procs = {
        case: subprocess.Popen(
            [sys.executable, "-m", "reparam", "train", *TINY, *args, "--out", str(out / str(i))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i, (case, (args, _)) in enumerate(BAD.items())
    }
    return {case: (p.wait(timeout=300), *p.communicate(), out / str(i)) for i, (case, p) in enumerate(procs.items())}


@pytest.mark.parametrize("case", BAD)
def test_bad_family_input_is_one_line_and_exit_2(bad_runs, case):
    code, _, stderr, out = bad_runs[case]
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert BAD[case][1] in lines[0], lines[0]
    assert not out.exists()
