"""Flow posteriors: every row of the flow table (tests/flows/rows.py) against autograd's Jacobian
and the change of variables, IAF's autoregressive masks, training, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from reparam import flows, latents
from reparam.flows import FlowPosterior
from reparam.flows.iaf import MADE
from tests.conftest import tiny_config
from tests.flows.rows import ROWS, Z, log_abs_det
from tests.helpers import assert_bad_config

ids = [r.flow for r in ROWS]
BY_NAME = {r.flow: r for r in ROWS}


def test_every_registered_flow_has_a_row():
    assert sorted(flows.REGISTRY.names()) == sorted(ids)


@pytest.mark.parametrize("row", ROWS, ids=ids)
@pytest.mark.parametrize("scale", ["random", "extreme"])
def test_log_det_matches_autograd_jacobian_and_the_flow_is_invertible(row, scale):
    """log |det dz/dz0| of the whole flow (every step) equals log |det J| with J from autograd in
    float64, per example, and det J > 0 (each step invertible), at random and extreme parameters."""
    flow, raw = row.build(scale=1.0 if scale == "random" else row.extreme)
    z0 = (1.0 if scale == "random" else row.extreme) * torch.randn(2, 3, dtype=torch.float64)
    _, log_det = flow(z0, raw)
    sign, reference = log_abs_det(flow, z0, raw)
    assert torch.isfinite(log_det).all() and torch.all(sign == 1), sign
    torch.testing.assert_close(log_det, reference)


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_flow_posterior_log_prob_is_the_change_of_variables(row):
    """log q(z) at the posterior's own draws equals log q0(z0) - log |det J(z0)|, z0 the base draw
    behind z (drawn again from the same seed) and J from autograd."""
    flow, raw = row.build()
    q0 = latents.get("gaussian", 3).double().posterior(torch.randn(2, 6, dtype=torch.float64))
    q = FlowPosterior(q0, flow, raw)
    torch.manual_seed(7)
    z = q.rsample()  # (2, 3)
    torch.manual_seed(7)
    z0 = q0.rsample()
    torch.testing.assert_close(z, flow(z0, raw)[0])
    torch.testing.assert_close(q.log_prob(z), q0.log_prob(z0) - log_abs_det(flow, z0, raw)[1])


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_flow_posterior_density_is_normalized_and_matches_its_draws(row):
    """E_q[p(z) / q(z)] = 1 for any normalized p (here N(0, I)): a wrong or unnormalized log q(z),
    or draws that do not follow it, would move the mean; checked within 4 standard errors."""
    flow, raw = row.build(dim=2, steps=3, seed=3)
    fam = latents.get("gaussian", 2).double()
    q = FlowPosterior(fam.posterior(torch.tensor([[0.3, -0.4, -1.0, -0.5]], dtype=torch.float64)), flow, raw[:1])
    torch.manual_seed(4)
    z = q.sample((200_000,))  # (N, 1, 2)
    w = (fam.prior().log_prob(z) - q.log_prob(z)).exp().squeeze(-1)
    se = float(w.std() / math.sqrt(len(w)))
    assert abs(float(w.mean()) - 1.0) < Z * se, (float(w.mean()), se)


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_a_new_flow_starts_where_its_row_says(row):
    """The map and log |det| of a freshly built flow, whatever the context, where the row claims one."""
    if row.start is None:
        pytest.skip(row.no_start)
    torch.manual_seed(0)
    z0, h = torch.randn(3, 5, 6), torch.randn(5, 6)
    z, log_det = flows.get(row.flow, 6, 4)(z0, h)
    torch.testing.assert_close(z, row.start.z(z0, 4).float(), atol=row.start.atol, rtol=0)
    torch.testing.assert_close(log_det, row.start.log_det(z0, 4).float(), atol=row.start.atol, rtol=0)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_iaf_is_autoregressive(steps):
    """Each MADE's output d depends on inputs < d only (a strictly lower-triangular Jacobian), so each
    IAF step's Jacobian is triangular and its determinant is the product of the gates."""
    torch.manual_seed(1)
    made = MADE(5, 5, 20).double()
    with torch.no_grad():
        for p in made.parameters():
            p.add_(torch.randn_like(p))
    z, h = torch.randn(5, dtype=torch.float64), torch.randn(1, 5, dtype=torch.float64)
    for part in (0, 1):  # m and s
        jac = torch.autograd.functional.jacobian(lambda v, part=part: made(v.unsqueeze(0), h)[part][0], z)  # (5, 5)
        assert torch.all(jac.triu() == 0), jac
        assert torch.any(jac.tril(-1) != 0)
    flow, raw = BY_NAME["iaf"].build(dim=5, steps=steps)
    assert flow(torch.randn(4, 1, 5, dtype=torch.float64), raw[:1])[0].shape == (4, 1, 5)


def test_a_run_written_before_model_init_reads_back_as_it_trained():
    """config.json without model.init (reparam 0.1 and 0.2) is read with torch's start and the gated IAF."""
    from reparam import config

    saved = tiny_config("latent.flow=iaf").to_dict()
    del saved["model"]["init"]
    saved["objective"].update(label_baseline="moving_average", label_temperature=0.5)  # the defaults before 0.3, saved in every config
    cfg = config.from_saved(saved)
    assert (cfg.model.init, cfg.latent.flow) == ("torch", "iaf_gated")
    now = config.from_saved(tiny_config("latent.flow=iaf").to_dict())
    assert (now.model.init, now.latent.flow) == ("auto", "iaf")


def test_flow_posterior_knows_its_density_at_its_own_draws_only():
    flow, raw = BY_NAME["planar"].build()
    q = FlowPosterior(latents.get("gaussian", 3).double().posterior(torch.zeros(1, 6, dtype=torch.float64)), flow, raw[:1])
    z = q.rsample((4,))
    assert q.log_prob(z).shape == (4, 1)
    with pytest.raises(NotImplementedError, match="its own draws"):
        q.log_prob(z.clone())


@pytest.mark.parametrize("name", ids)
def test_a_flow_posterior_trains_and_evaluates_on_digits(name, tmp_path):
    """The flow's parameters learn, the run's ELBO and IS log-likelihood describe one model (log p(x) >= ELBO)."""
    from reparam.train import train

    run = train(tiny_config(f"latent.flow={name}", "latent.flow_steps=2", "train.epochs=3"), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mi"] is None and -summary["nll"] >= summary["elbo"] - 4 * summary["nll_se"]
    assert (run / "samples.png").is_file()


BAD = [
    (["latent.flow=spline"], "unknown latent.flow 'spline'; valid: iaf, iaf_gated, planar"),
    (["latent.flow_steps=3"], "latent.flow_steps applies to a flow"),
    (["latent.flow=planar", "latent.flow_steps=-1"], "latent.flow_steps must be >= 1"),
    (["latent.flow=iaf", "latent.family=dirichlet"], "latent.flow=iaf moves latents on R^D"),
    (["latent.flow=planar", "latent.family=bernoulli-exact"], "latent.flow=planar moves latents on R^D"),
    (["latent.flow=planar", "latent.family=bernoulli"], "latent.kl=discrete"),
    (["latent.flow=planar", "objective.estimator=stl"], "knows at its own draws only"),
]


@pytest.mark.parametrize("overrides,needle", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_flow_settings_are_one_line_and_exit_2(overrides, needle, tmp_path, capsys):
    assert_bad_config(overrides, needle, tmp_path, capsys)
