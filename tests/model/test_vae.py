"""The shape contract, the differentiability claim, and the Gaussian family's KL."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reparam import latents, likelihoods, model, objectives
from tests.conftest import tiny_config

B, K, D = 5, 3, 4


@pytest.fixture
def vae():
    return model.build(tiny_config(f"latent.dim={D}"), (8, 8))


def test_posterior_prior_and_likelihood_shapes(vae):
    x = torch.rand(B, 8, 8).bernoulli()
    q = vae.posterior(x)
    assert q.batch_shape == (B,) and q.event_shape == (D,)
    z = q.rsample((K,))
    assert z.shape == (K, B, D)
    px = vae.likelihood(z)
    assert px.batch_shape == (K, B) and px.event_shape == (8, 8)
    assert px.log_prob(x).shape == (K, B)
    p = vae.prior()
    assert p.event_shape == (D,) and p.sample((K, B)).shape == (K, B, D)


@pytest.mark.parametrize("name", objectives.OBJECTIVES)
def test_objectives_return_per_example_terms(vae, name):
    x = torch.rand(B, 8, 8).bernoulli()
    bound, terms = objectives.lookup(name)(vae, x, k=K)
    assert bound.shape == (B,)
    assert all(t.shape == (B,) for t in terms.values())
    assert torch.isfinite(bound).all()


@pytest.mark.parametrize("name", objectives.OBJECTIVES)
def test_every_parameter_gets_a_gradient(vae, name):
    """The article's differentiability claim: the loss reaches every encoder weight.

    A `.sample()` anywhere on the path from encoder to loss would leave the encoder's
    gradients at None or zero, and this test would fail.
    """
    x = torch.rand(16, 8, 8).bernoulli()
    bound, _ = objectives.lookup(name)(vae, x, k=2)
    (-bound.mean()).backward()
    for pname, p in vae.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert p.grad.abs().sum() > 0, f"{pname} got an all-zero gradient"


def test_elbo_terms_add_up(vae):
    x = torch.rand(B, 8, 8).bernoulli()
    bound, terms = objectives.elbo(vae, x, beta=0.5)
    torch.testing.assert_close(terms["elbo"], terms["log_px_z"] - terms["kl"])
    torch.testing.assert_close(bound, terms["log_px_z"] - 0.5 * terms["kl"])


def test_likelihood_sums_over_pixels_not_mean():
    head = likelihoods.get("bernoulli", (8, 8))
    raw = torch.zeros(2, 64)  # p = 0.5 everywhere
    x = torch.ones(2, 8, 8)
    torch.testing.assert_close(head(raw).log_prob(x), torch.full((2,), 64 * math.log(0.5)))


def test_gaussian_trick_is_loc_plus_scale_times_eps():
    fam = latents.get("gaussian", dim=3)
    loc, logvar = torch.randn(2, 3), torch.randn(2, 3)
    q = fam.posterior(torch.cat([loc, logvar], -1))
    torch.manual_seed(7)
    z = q.rsample()
    torch.manual_seed(7)
    eps = torch.randn(2, 3)
    torch.testing.assert_close(z, loc + torch.exp(0.5 * logvar) * eps)


def test_gaussian_closed_form_kl_matches_monte_carlo():
    """Closed-form KL(q || N(0, I)) equals mean_k[log q(z_k) - log p(z_k)] within 4 SE."""
    torch.manual_seed(0)
    fam = latents.get("gaussian", dim=6)
    q = fam.posterior(torch.randn(4, 12))
    z = q.sample((200_000,))
    samples = q.log_prob(z) - fam.prior().log_prob(z)  # (S, 4)
    mc, se = samples.mean(0), samples.std(0) / math.sqrt(len(samples))
    closed = fam.kl(q)
    assert (closed >= 0).all()
    assert ((closed - mc).abs() < 4 * se).all(), (closed, mc, se)


def test_monte_carlo_kl_fallback_is_used_without_a_registered_kl():
    class NoClosedForm(latents.Family):
        n_params = 2

        def posterior(self, raw):
            loc, logvar = self.split(raw)
            return torch.distributions.Independent(torch.distributions.Normal(loc, (0.5 * logvar).exp()), 1)

        def prior(self):
            return torch.distributions.MultivariateNormal(self._full(0.0), torch.eye(self.dim))

    fam = NoClosedForm(dim=2)
    q = fam.posterior(torch.zeros(3, 4))
    assert not fam.has_closed_form_kl(q)
    z = q.rsample((5,))
    torch.testing.assert_close(fam.kl(q, z), (q.log_prob(z) - fam.prior().log_prob(z)).mean(0))
    with pytest.raises(ValueError):
        fam.kl(q)


def test_bernoulli_head_refuses_data_outside_unit_interval():
    from reparam.errors import DataError

    head = likelihoods.get("bernoulli", (2, 2))
    head.check_data(torch.rand(3, 2, 2), "x")
    with pytest.raises(DataError, match="outside \\[0, 1\\]"):
        head.check_data(torch.full((3, 2, 2), 1.5), "x")


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 6), k=st.integers(1, 4), d=st.integers(1, 5), h=st.integers(1, 6), w=st.integers(1, 6))
def test_shape_contract_holds_for_any_sizes(b, k, d, h, w):
    vae = model.build(tiny_config(f"latent.dim={d}"), (h, w))
    x = torch.rand(b, h, w).bernoulli()
    q = vae.posterior(x)
    z = q.rsample((k,))
    assert z.shape == (k, b, d) and vae.likelihood(z).log_prob(x).shape == (k, b)
    bound, terms = objectives.elbo(vae, x, k=k)
    assert bound.shape == (b,) and set(terms) >= {"elbo", "log_px_z", "kl"}
