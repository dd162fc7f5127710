"""M2's label estimators (Kingma et al. 2014) against independent computations.

- ``exact`` sums over the classes: against a loop over the classes in float64, and its ELBO
  against the closed form of a linear-Gaussian model (within 4 SE of a many-sample mean);
- ``score`` is unbiased for U: its mean gradient within 4 SE of the exact gradient, with each
  baseline (two labels each the other's baseline included);
- ``relaxed`` passes its draw straight through: the networks see one-hot labels, its value is
  unbiased for U (within 4 SE of the exact sum), and its mean gradient is within 4 SE of the
  straight-through gradient's expectation by Gauss-Legendre quadrature over the Gumbel-softmax
  noise (two classes: one logistic variable).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from reparam import latents, likelihoods, objectives
from reparam.model import ConditionalVAE
from reparam.objectives import labels

D, C, X = 2, 3, 5


def tiny_m2(classes: int = C, scale: float = 0.7) -> ConditionalVAE:
    """Linear networks, Gaussian latents and a Gaussian likelihood of fixed scale, in float64."""
    torch.manual_seed(3)
    family = latents.get("gaussian", D)
    head = likelihoods.get("gaussian", (X,), scale=scale)
    model = ConditionalVAE(nn.Linear(X, family.raw_size), family, nn.Linear(D + classes, X), head, classes, nn.Linear(X, classes))
    return model.double()


def deterministic(model, x, **_):
    """A bound with no sampling: log p(x | mean of q(z|x, y), y) - KL(q(z|x, y) || p(z)), (B,)."""
    q = model.posterior(x)
    value = model.likelihood(q.mean).log_prob(x) - model.kl(q)
    return value, {"elbo": value, "log_px_z": value + model.kl(q), "kl": model.kl(q)}


def test_exact_sums_the_bound_over_the_classes_as_a_loop_does():
    model = tiny_m2()
    x = torch.randn(4, X, dtype=torch.float64)
    u, terms = labels.exact(deterministic, model, x)
    logits = model.classifier(x)
    log_q = torch.log_softmax(logits, -1)
    by_hand = torch.zeros(4, dtype=torch.float64)
    for i in range(4):
        for c in range(C):
            bound_c = deterministic(model.given(torch.tensor([c])), x[i : i + 1])[0][0]
            by_hand[i] += log_q[i, c].exp() * (bound_c - math.log(C) - log_q[i, c])  # q (L(x, c) + log p(c) - log q)
    torch.testing.assert_close(u, by_hand, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["elbo"], by_hand, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["label_kl"], (log_q.exp() * (log_q + math.log(C))).sum(-1))


def closed_form_u(model, x: torch.Tensor) -> torch.Tensor:
    """U(x) of the linear-Gaussian M2 in closed form: for each class, E_q log N(x; W_z z + W_y y + b, s^2)
    = log N(x; W_z mu + W_y y + b, s^2) - sum_i (W_z diag(sigma^2) W_z^T)_ii / (2 s^2), minus the Gaussian KL."""
    w, b = model.decoder.weight, model.decoder.bias
    wz, wy = w[:, :D], w[:, D:]
    s = float(model.head.scale())
    q_y = torch.softmax(model.classifier(x), -1)
    out = -(q_y * (torch.log(q_y) + math.log(C))).sum(-1)  # -KL(q(y|x) || uniform)
    for c in range(C):
        q = model.given(torch.tensor(c)).posterior(x)
        mu, var = q.base_dist.loc, q.base_dist.scale**2
        mean = mu @ wz.T + wy[:, c] + b
        rec = torch.distributions.Normal(mean, s).log_prob(x).sum(-1) - (var @ (wz**2).T).sum(-1) / (2 * s**2)
        kl = 0.5 * (var + mu**2 - 1 - torch.log(var)).sum(-1)
        out = out + q_y[:, c] * (rec - kl)
    return out


def test_exact_with_the_elbo_is_unbiased_for_the_closed_form_u():
    model = tiny_m2()
    x = torch.randn(3, X, dtype=torch.float64)
    n = 20000
    draws = labels.exact(objectives.elbo, model, x.repeat(n, 1))[1]["elbo"].view(n, 3)  # (N, B): N independent estimates
    truth = closed_form_u(model, x)
    se = draws.std(0) / math.sqrt(len(draws))
    assert bool(((draws.mean(0) - truth).abs() <= 4 * se + 1e-9).all()), (draws.mean(0), truth, se)


def batch_means(model, params, value, groups: int = 30) -> torch.Tensor:
    """``groups`` independent gradient estimates, (groups, P): each the gradient of ``value(model)``,
    a mean over many replicated rows (the batch-means method: their spread gives the SE)."""
    out = []
    for _ in range(groups):
        model.zero_grad()
        value(model).backward()
        out.append(torch.cat([p.grad.flatten() for p in params]))
    return torch.stack(out)


def assert_within_4_se(estimates: torch.Tensor, truth: torch.Tensor) -> None:
    se = estimates.std(0) / math.sqrt(len(estimates))
    z = (estimates.mean(0) - truth) / se.clamp_min(1e-12)
    assert float(z.abs().max()) < 4, z


def exact_gradient(model, params, value) -> torch.Tensor:
    model.zero_grad()
    value(model).backward()
    return torch.cat([p.grad.flatten() for p in params])


X4 = torch.randn(4, X, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
REPS = 500  # rows per replicate of each example


@pytest.mark.parametrize("baseline", [None, "moving_average", "nvil", "loo"])
def test_score_label_gradient_is_unbiased_for_u(baseline):
    """The classifier's gradient of sum_x U(x): the score estimate's mean (with each baseline) against
    the exact sum's gradient."""
    model = tiny_m2()
    params = list(model.classifier.parameters())
    truth = exact_gradient(model, params, lambda m: labels.exact(deterministic, m, X4)[0].sum())
    rows = X4.repeat(REPS, 1)
    torch.manual_seed(0)
    if baseline == "loo":
        g = batch_means(model, params, lambda m: labels.score_loo(deterministic, m, rows)[0].sum() / REPS)
    else:
        state = None if baseline is None else labels.baseline_module(baseline, (X,)).double()
        g = batch_means(model, params, lambda m: labels.score(deterministic, m, rows, state)[0].sum() / REPS)
    assert_within_4_se(g, truth)


def test_two_labels_each_the_others_baseline_cancel_the_spread_between_images():
    """The variance of the classifier's gradient with the loo baseline is far below the moving
    average's on images whose bounds differ by tens of nats (what sent M2's score labels to chance)."""
    model = tiny_m2()
    params = list(model.classifier.parameters())
    rows = (X4 * torch.tensor([[1.0], [3.0], [0.3], [2.0]], dtype=torch.float64)).repeat(50, 1)
    torch.manual_seed(0)
    loo = batch_means(model, params, lambda m: labels.score_loo(deterministic, m, rows)[0].sum() / 50)
    state = labels.baseline_module("moving_average", (X,)).double()
    avg = batch_means(model, params, lambda m: labels.score(deterministic, m, rows, state)[0].sum() / 50)
    assert float(loo.var(0).sum()) < 0.25 * float(avg.var(0).sum())


def relaxed_objective_by_quadrature(model, x: torch.Tensor, temperature: float, nodes: int = 400) -> torch.Tensor:
    """sum_x E[bound(x | y)] - KL(q(y|x) || p(y)) for two classes, y the straight-through label: the
    one-hot of y~_1 > 1/2 in value, y~_1 = sigmoid((l_1 - l_2 + L) / tau) in the gradient,
    L ~ Logistic(0, 1) = logit(u), u uniform; Gauss-Legendre over u on (0, 1). Its gradient is the
    straight-through gradient's expectation."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    u = torch.tensor((t + 1) / 2, dtype=torch.float64)
    weights = torch.tensor(w / 2, dtype=torch.float64)
    logits = model.classifier(x)  # (B, 2)
    noise = torch.log(u) - torch.log1p(-u)  # (n,)
    y1 = torch.sigmoid((logits[:, :1] - logits[:, 1:] + noise) / temperature).T.reshape(-1)  # (n B,): node-major
    hard1 = (y1 > 0.5).to(y1.dtype)
    y1 = hard1 + (y1 - y1.detach())
    y = torch.stack([y1, 1 - y1], -1)
    values = deterministic(model.given(y), x.repeat(nodes, 1))[0].view(nodes, len(x))
    q = torch.distributions.OneHotCategorical(logits=logits)
    return (weights[:, None] * values).sum() - labels.kl_to_uniform(q).sum()


def test_relaxed_label_gradient_is_the_straight_through_expectation():
    tau = 0.7
    model = tiny_m2(classes=2)
    x = X4[:3]
    params = [*model.classifier.parameters(), *model.decoder.parameters()]
    truth = exact_gradient(model, params, lambda m: relaxed_objective_by_quadrature(m, x, tau))
    rows = x.repeat(REPS, 1)
    torch.manual_seed(0)
    g = batch_means(model, params, lambda m: labels.relaxed(deterministic, m, rows, tau)[0].sum() / REPS)
    assert_within_4_se(g, truth)


def test_relaxed_labels_reach_the_networks_one_hot_and_the_value_is_unbiased_for_u():
    """The encoder and decoder see one-hot labels (a relaxed label's continuous part carried
    information about the image that the discrete KL never charged), and the estimate's mean is U."""
    model = tiny_m2()
    seen = []
    given = model.given
    model.given = lambda y: seen.append(y.detach()) or given(y)
    torch.manual_seed(0)
    n = 4000
    value = labels.relaxed(deterministic, model, X4.repeat(n, 1), 0.5)[0].detach().view(n, len(X4))
    y = seen[0]
    assert torch.equal(y, torch.nn.functional.one_hot(y.argmax(-1), C).to(y.dtype))
    truth = labels.exact(deterministic, model, X4)[0].detach()
    se = value.std(0) / math.sqrt(n)
    assert bool(((value.mean(0) - truth).abs() <= 4 * se).all()), (value.mean(0), truth, se)


def test_semi_supervised_rows_average_to_kingmas_objective():
    """mean of the rows = (N_u/N) mean_u U + (N_l/N) mean_l (bound + log p(y)) + alpha mean_l log q(y|x)."""
    model = tiny_m2()
    x, xl, yl = torch.randn(5, X, dtype=torch.float64), torch.randn(2, X, dtype=torch.float64), torch.tensor([0, 2])

    class Cfg:
        labels, label_weight = "exact", 0.3

    rows, terms = labels.semi_supervised(deterministic, model, labels.SemiSupervised(x, xl, yl, 0.9, 0.1), Cfg, None)
    u = labels.exact(deterministic, model, x)[0]
    bound_l = deterministic(model.given(yl), xl)[0] - math.log(C)
    log_q = torch.log_softmax(model.classifier(xl), -1)[torch.arange(2), yl]
    expected = 0.9 * u.mean() + 0.1 * bound_l.mean() + 0.3 * log_q.mean()
    torch.testing.assert_close(rows.mean(), expected)
    assert rows.shape == (7,) and terms["label_log_q"].shape == (2,)


@pytest.mark.parametrize("how", ["exact", "relaxed", "score"])
def test_every_estimate_works_with_every_bound(how):
    """The IWAE and Renyi bounds inside the label estimates: finite values and gradients."""
    model = tiny_m2()
    x = torch.randn(4, X, dtype=torch.float64)

    class Cfg:
        labels, label_temperature, label_baseline = how, 0.5, "loo"

    for name, opts in (("iwae", {"k": 3}), ("renyi", {"k": 3, "alpha": 0.5}), ("elbo", {"k": 2})):
        model.zero_grad()
        value, _ = labels.unlabelled(objectives.OBJECTIVES.lookup(name), model, x, Cfg, None, **opts)
        value.sum().backward()
        assert torch.isfinite(value).all() and all(torch.isfinite(p.grad).all() for p in model.classifier.parameters())
