"""Flow posteriors: each step's log-determinant against autograd's Jacobian, IAF's autoregressive
masks, the flow posterior's density normalized and consistent with its draws, training, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from reparam import flows, latents
from reparam.flows import FlowPosterior
from reparam.flows.iaf import MADE
from tests.conftest import tiny_config
from tests.helpers import assert_bad_config

Z = 4.0
FLOWS = ["planar", "iaf"]


def flow_and_raw(name: str, dim: int = 3, steps: int = 3, batch: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    flow = flows.get(name, dim, steps).double()
    if name == "iaf":  # move the MADEs away from their near-identity start, so the test has teeth
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.5 * torch.randn_like(p))
    raw = torch.randn(batch, flow.raw_size, dtype=torch.float64)
    return flow, raw


@pytest.mark.parametrize("name", FLOWS)
def test_log_det_matches_autograd_jacobian(name):
    """log |det dz/dz0| of the whole flow (every step) equals log |det J| with J from autograd, per example."""
    flow, raw = flow_and_raw(name)
    z0 = torch.randn(2, 3, dtype=torch.float64)
    _, log_det = flow(z0, raw)
    for b in range(2):
        jac = torch.autograd.functional.jacobian(lambda v, b=b: flow(v.unsqueeze(0), raw[b : b + 1])[0][0], z0[b])
        torch.testing.assert_close(log_det[b], torch.linalg.slogdet(jac)[1])


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
    flow, raw = flow_and_raw("iaf", dim=5, steps=steps)
    assert flow(torch.randn(4, 1, 5, dtype=torch.float64), raw[:1])[0].shape == (4, 1, 5)


@pytest.mark.parametrize("name", FLOWS)
def test_flow_posterior_density_is_normalized_and_matches_its_draws(name):
    """E_q[p(z) / q(z)] = 1 for any normalized p (here N(0, I)): a wrong or unnormalized log q(z),
    or draws that do not follow it, would move the mean; checked within 4 standard errors."""
    flow, raw = flow_and_raw(name, dim=2, steps=3, batch=1, seed=3)
    fam = latents.get("gaussian", 2).double()
    q = FlowPosterior(fam.posterior(torch.tensor([[0.3, -0.4, -1.0, -0.5]], dtype=torch.float64)), flow, raw)
    torch.manual_seed(4)
    z = q.sample((200_000,))  # (N, 1, 2)
    w = (fam.prior().log_prob(z) - q.log_prob(z)).exp().squeeze(-1)
    se = float(w.std() / math.sqrt(len(w)))
    assert abs(float(w.mean()) - 1.0) < Z * se, (float(w.mean()), se)


def test_flow_posterior_knows_its_density_at_its_own_draws_only():
    flow, raw = flow_and_raw("planar", batch=1)
    q = FlowPosterior(latents.get("gaussian", 3).double().posterior(torch.zeros(1, 6, dtype=torch.float64)), flow, raw)
    z = q.rsample((4,))
    assert q.log_prob(z).shape == (4, 1)
    with pytest.raises(NotImplementedError, match="its own draws"):
        q.log_prob(z.clone())


@pytest.mark.parametrize("name", FLOWS)
def test_a_flow_posterior_trains_and_evaluates_on_digits(name, tmp_path):
    """The flow's parameters learn, the run's ELBO and IS log-likelihood describe one model (log p(x) >= ELBO)."""
    from reparam.train import train

    run = train(tiny_config(f"latent.flow={name}", "latent.flow_steps=2", "train.epochs=3"), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mi"] is None and -summary["nll"] >= summary["elbo"] - 4 * summary["nll_se"]
    assert (run / "samples.png").is_file()


BAD = [
    (["latent.flow=spline"], "unknown latent.flow 'spline'; valid: iaf, planar"),
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
