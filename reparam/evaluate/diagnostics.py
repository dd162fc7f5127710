"""Posterior-collapse diagnostics: KL per latent dimension, active units, I(x; z)."""

from __future__ import annotations

import math
from typing import Any

import torch

#: Burda et al. (2016): unit u is active if Cov_x(E_q[u]) exceeds this.
ACTIVE_THRESHOLD = 0.01


@torch.inference_mode()
def kl_per_dim(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor | None:
    """Mean over x of KL(q(z_d|x) || p(z_d)) for each dimension d, (D,); None if not factorized."""
    total = torch.zeros(())
    for start in range(0, len(x), batch_size):
        part = model.rows(slice(start, start + batch_size))
        kl = part.kl_per_dim(part.posterior(x[start : start + batch_size]))
        if kl is None:
            return None
        total = total + kl.sum(0)
    return total / len(x)


@torch.inference_mode()
def posterior_points(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The family's representative latent (the mean for most) for each example, (N, D)."""
    chunks = [model.point(model.rows(slice(s, s + batch_size)).posterior(x[s : s + batch_size])) for s in range(0, len(x), batch_size)]
    return torch.cat(chunks)


@torch.inference_mode()
def activity(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Cov_x(E_q[z_d | x]) per dimension d, (D,), with E_q[z_d | x] from ``family.unit_mean``."""
    means = [model.unit_mean(model.rows(slice(s, s + batch_size)).posterior(x[s : s + batch_size])) for s in range(0, len(x), batch_size)]
    return torch.cat(means).double().var(0)


def active_units(model, x: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    return int((activity(model, x) > threshold).sum())


def _query_index(n: int, n_queries: int, seed: int) -> torch.Tensor:
    if n_queries >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_queries]


@torch.inference_mode()
def _log_aggregate(q_all, z: torch.Tensor, max_elements: int) -> torch.Tensor:
    """log q(z_i) = logsumexp_n log q(z_i|x_n) - log N for z (M, D); returns (M,).

    Each chunk is an (m, N) table of log q(z_i|x_n): one matrix product where the posterior
    has ``pairwise_log_prob`` (the diagonal Gaussian), else z (m, 1, D) broadcast against q
    with batch (N,), (m, N, D) elements at most ``max_elements``.
    """
    n, d = q_all.batch_shape[0], z.shape[-1]
    pairwise = getattr(q_all, "pairwise_log_prob", None)
    if pairwise is not None:
        m = max(1, max_elements // n)
        return torch.cat([torch.logsumexp(pairwise(zc), dim=1).float() for zc in z.split(m)]) - math.log(n)
    m = max(1, max_elements // (n * d))
    out = [torch.logsumexp(q_all.log_prob(zc.unsqueeze(1)), dim=1) for zc in z.split(m)]
    return torch.cat(out) - math.log(n)


@torch.inference_mode()
def mutual_information(model, x: torch.Tensor, n_queries: int = 1000, seed: int = 0, max_elements: int = 2**22) -> dict:
    """I(x; z) under the aggregate posterior q(z) = (1/N) sum_n q(z|x_n), in nats.

    ELBO surgery (Hoffman & Johnson 2016): E_x KL(q(z|x) || p(z)) = I(x; z) + KL(q(z) || p(z)).
    Estimated as in He et al. (2019): for M query images x_i (a fixed random subset of
    x, all N of them for log q) and one z_i ~ q(z|x_i),
        I ~ (1/M) sum_i [log q(z_i|x_i) - log((1/N) sum_n q(z_i|x_n))].
    The sum over n includes n = i, so every term is <= log N: the estimate can never
    exceed log N (a posterior that identifies its image exactly reaches it), and it is
    exactly 0 when q(z|x) does not depend on x. Family-agnostic: only ``log_prob`` is used.
    Returns ``mi``, its standard error ``mi_se`` over the queries, the marginal KL
    ``kl_marginal`` = E_x KL - I, and ``mi_max`` = log N; None for the first three where
    q(z|x) has a density at its own draws only (a flow posterior).
    """
    if not model.density_everywhere:
        return {"mi": None, "mi_se": None, "kl_marginal": None, "mi_max": math.log(len(x))}
    q_all = model.posterior(x)  # batch (N,)
    idx = _query_index(len(x), n_queries, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        part = model.rows(idx)
        q = part.posterior(x[idx])  # batch (M,)
        z = q.sample()  # (M, D)
    terms = (q.log_prob(z) - _log_aggregate(q_all, z, max_elements)).double()  # (M,)
    kl = part.kl(q, z.unsqueeze(0)).double().mean()
    mi = terms.mean()
    se = terms.std() / math.sqrt(len(terms)) if len(terms) > 1 else torch.tensor(float("nan"))
    return {"mi": float(mi), "mi_se": float(se), "kl_marginal": float(kl - mi), "mi_max": math.log(len(x))}


@torch.inference_mode()
def layers(model, x: torch.Tensor, batch_size: int = 1000, seed: int = 0) -> dict:
    """Per stochastic layer of a hierarchical model: active units and the mean KL term (nats).

    The KL term of layer l is E_q[log q(z_l|z_(l-1)) - log p(z_l|z_(l+1))], one seeded draw per
    example (``model.layer_statistics``); the terms sum to the model's KL. Empty for one layer.
    """
    if len(model.layer_dims) < 2:
        return {}
    means, kls = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(x), batch_size):
            q = model.posterior(x[start : start + batch_size])
            m, kl = model.layer_statistics(q, q.sample((1,)))
            means.append(m)
            kls.append(kl)
    active = [int((torch.cat(ms).double().var(0) > ACTIVE_THRESHOLD).sum()) for ms in zip(*means)]
    kl = torch.cat(kls).double().mean(0)
    return {"layer_dims": list(model.layer_dims), "active_units_per_layer": active, "kl_per_layer": [round(float(v), 5) for v in kl]}


def dashboard(model, x: torch.Tensor, n_queries: int = 1000) -> dict:
    """The posterior-collapse dashboard: active units, KL per dimension, I(x; z), and per layer.

    ``active_units`` and ``kl_per_dim`` read the latent the views drive (the top layer of a
    hierarchical model); ``kl_per_dim`` is a list of D floats, or None where the dimensions
    are coupled or the KL has no closed form.
    """
    kl = kl_per_dim(model, x)
    out: dict[str, Any] = {"active_units": active_units(model, x), "latent_dim": int(model.family.dim)}
    out["kl_per_dim"] = None if kl is None else [round(float(v), 5) for v in kl]
    out.update(mutual_information(model, x, n_queries))
    out.update(layers(model, x))
    out["collapse"] = collapse(out)
    return out


def collapse(dash: dict) -> list[str]:
    """One line for each stochastic layer with no active unit (Cov_x E_q[z_d] <= ACTIVE_THRESHOLD
    for every d): the layer says nothing about x, whatever the bound reads. Empty when none."""
    dims = dash.get("layer_dims") or [dash["latent_dim"]]
    active = dash.get("active_units_per_layer") or [dash["active_units"]]
    where = (lambda i: f"layer {i + 1} of {len(dims)} ({dims[i]} units)") if len(dims) > 1 else (lambda i: f"the latent ({dims[i]} units)")
    return [
        f"{where(i)} collapsed: no unit is active (Cov_x E_q[z] <= {ACTIVE_THRESHOLD}), so it carries no information about x"
        for i, a in enumerate(active) if a == 0
    ]  # fmt: skip


def epoch_dashboard(model, x: torch.Tensor, n_queries: int = 200) -> dict:
    """The cheap part of the dashboard, logged after every held-out evaluation.

    Active units and I(x; z) (with ``n_queries`` query images, so it stays a fraction of
    the epoch's cost); the global RNG is untouched, so logging it does not change training.
    """
    mi = mutual_information(model, x, n_queries)
    out = {"active_units": active_units(model, x), "mi": mi["mi"], "mi_se": mi["mi_se"]}
    per_layer = layers(model, x)
    if per_layer:
        out.update(active_units_per_layer=per_layer["active_units_per_layer"], kl_per_layer=per_layer["kl_per_layer"])
    return out
