"""Held-out metrics: the test ELBO, the importance-sampled log-likelihood, the dashboard.

All of it runs under ``torch.inference_mode`` (no autograd bookkeeping) and vectorized
over examples and samples: one decoder call per chunk of (samples x examples) rows.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, NamedTuple

import torch
from torch.distributions import MixtureSameFamily
from tqdm.auto import tqdm

from .. import objectives
from ..errors import ConfigError
from ..objectives import labels
from . import budget, diagnostics

#: Upper bound on (examples x samples x pixels) held in memory at once by the IS estimate.
#: 2**21 floats (8 MB of logits, ~2,700 decoder rows for MNIST) keeps a chunk in cache:
#: on a 2-core EPYC it measured several times faster than 2**23 for K = 1000.
MAX_ELEMENTS = 2**21


#: Examples and samples that share one seeded draw of z. The estimate depends on these fixed
#: units (and the seed), never on ``max_elements``: chunking for memory cannot change it.
DRAW_EXAMPLES = 16
DRAW_SAMPLES = 500

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@torch.inference_mode()
def elbo_terms(model, x: torch.Tensor, batch_size: int = 1000, seed: int | None = None) -> dict[str, float]:
    """Mean test ELBO and its terms over x (N, *x_shape), one sample per example.

    A conditional VAE given the test labels (``model.given(y)``) scores log p(x|y); M2
    (its labels latent) the exact sum over the classes, U(x) of ``objectives.labels``.
    ``seed``: the draws come from their own seeded stream (the same seed, the same numbers)
    and the global RNG is left untouched; None draws from the global RNG (the trainer's
    held-out terms at each epoch, which training's random stream includes).
    """
    if seed is not None:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            _reseed(x.device, seed, 0, 0)
            return elbo_terms(model, x, batch_size)
    sums: dict[str, float] = {}
    for sl in _batches(len(x), batch_size):
        if model.semi_supervised:
            _, terms = labels.exact(objectives.elbo, model, x[sl])
        else:
            _, terms = objectives.elbo(model.rows(sl), x[sl])
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value.sum())
    return {key: value / len(x) for key, value in sums.items()}


def _reseed(device: torch.device, seed: int, block: int, group: int) -> None:
    """Seed the generator for draw unit (block, group): distinct units get distinct streams."""
    # On the CPU seed only the CPU generator: torch.manual_seed also queues lazy seeding of
    # every accelerator backend (74 µs per call against 1 µs).
    reseed = torch.random.default_generator.manual_seed if device.type == "cpu" else torch.manual_seed
    reseed(((seed * 1_000_003 + block) * 1_000_003 + group) % 2**32)  # mt19937 keeps 32 bits


def _log_px_z(model, z: torch.Tensor, x: torch.Tensor, rows: int) -> torch.Tensor:
    """log p(x_i|z_ki) (K, b) for z (K, b, D), decoding at most ``rows`` (sample, example) pairs at once."""
    k, b = z.shape[:2]
    if k * b <= rows:
        return model.likelihood(z).log_prob(x)
    out = torch.empty(k, b, device=z.device)
    ex = max(1, min(b, rows))  # examples per call
    for e in _batches(b, ex):
        for s in _batches(k, max(1, rows // ex)):
            out[s, e] = model.likelihood(z[s, e]).log_prob(x[e])
    return out


def _components(prior) -> int:
    """The components a mixture's log_prob tabulates at every draw: torch's mixture builds
    (K, b, components, D); ``GaussianMixture``'s matrix products need no such table."""
    return prior.mixture_distribution.logits.shape[-1] if isinstance(prior, MixtureSameFamily) else 1


def _log_prior(prior, z: torch.Tensor, max_elements: int) -> torch.Tensor:
    """log p(z) (K, b) for z (K, b, D), in chunks of samples: a mixture prior's table of
    components (K, b, components, D) stays within ``max_elements``."""
    per_sample = z.shape[1] * z.shape[-1] * _components(prior)
    chunk = max(1, max_elements // per_sample)
    if chunk >= len(z):
        return prior.log_prob(z)
    return torch.cat([prior.log_prob(part) for part in z.split(chunk)])


@torch.inference_mode()
def log_likelihood(model, x: torch.Tensor, k: int, max_elements: int = MAX_ELEMENTS, seed: int = 0, precision: str = "fp32", progress: bool | None = False):
    """Importance-sampled log p(x) per example, and the effective sample size of the weights.

    log p(x) ~ logsumexp_k(log w_k) - log K, log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),
    z_k ~ q(z|x) (Burda et al. 2016: this is L_K, which rises to log p(x) as K grows).
    Each example is encoded once. z is drawn through the family's ``rsample`` in units of
    ``DRAW_EXAMPLES`` examples x ``DRAW_SAMPLES`` samples, each from its own seeded stream,
    and decoded in chunks of at most ``max_elements`` pixels; partial logsumexps are merged
    in log space. ESS = (sum w)^2 / sum w^2 (Kish). Deterministic for a given ``seed`` and
    independent of ``max_elements``; the global RNG is left untouched.

    ``precision="bf16"`` runs the decoder's matrix multiplications in bfloat16 (autocast;
    the likelihood, log p(z) and log q stay in float32). On a 2-core EPYC with AVX512-BF16
    the matmuls run 2.2x faster and the whole estimate 1.3-1.4x; ``benchmarks/speed.py``
    measures the change in log p(x) beside the timing. ``progress``: a bar over the
    images (None: only on a terminal). Returns two (N,) tensors.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if model.semi_supervised:
        return _marginal_log_likelihood(model, x, k, max_elements, seed, precision)
    dtype = PRECISIONS[precision]
    cast = torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    rows = max(1, max_elements // max(1, math.prod(model.x_shape)))
    log_px, ess = [], []
    prior = None if model.per_example_prior else model.prior()  # once, unless per-example labels
    bar = tqdm(total=len(x), disable=None if progress is None else not progress, unit="image", desc=f"log p(x), K={k}", leave=False, dynamic_ncols=True)
    with bar, torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        for block, ex in enumerate(_batches(len(x), DRAW_EXAMPLES)):
            xb = x[ex]
            part = model.rows(ex)
            q = part.posterior(xb)
            lse = torch.full((len(xb),), -math.inf, device=x.device)
            lse2 = lse.clone()
            for group, ks in enumerate(_batches(k, DRAW_SAMPLES)):
                _reseed(x.device, seed, block, group)
                z = q.rsample((ks.stop - ks.start,))  # (k', b, D)
                with cast:  # only the decoder: log p(z) and log q(z|x) stay in float32
                    lw = _log_px_z(part, z, xb, rows)
                lw = lw + _log_prior(part.prior() if prior is None else prior, z, max_elements) - q.log_prob(z)
                lse = torch.logaddexp(lse, torch.logsumexp(lw, 0))
                lse2 = torch.logaddexp(lse2, torch.logsumexp(2 * lw, 0))
            log_px.append(lse - math.log(k))
            ess.append(torch.exp(2 * lse - lse2))
            bar.update(len(xb))
    return torch.cat(log_px), torch.cat(ess)


def _marginal_log_likelihood(model, x: torch.Tensor, k: int, max_elements: int, seed: int, precision: str):
    """M2's log p(x) = log sum_y p(y) p(x|y), p(y) uniform, each p(x|y) importance-sampled with
    K draws of q(z|x, y). The sum of unbiased estimates of p(x|y) is unbiased for p(x), so
    the estimate sits below log p(x) in expectation, like L_K. ESS: the classes' ESS
    weighted by their share of the sum."""
    c = model.classes
    per_class = [log_likelihood(model.given(torch.tensor(y, device=x.device)), x, k, max_elements, seed, precision) for y in range(c)]
    log_pxy = torch.stack([lp for lp, _ in per_class])  # (C, N)
    share = torch.softmax(log_pxy, 0)
    ess = (share * torch.stack([e for _, e in per_class])).sum(0)
    return torch.logsumexp(log_pxy, 0) - math.log(c), ess


@torch.inference_mode()
def classification(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict:
    """M2's classifier q(y|x) on labelled images: error rate of its most probable class, and its SE."""
    wrong = torch.cat([model.label_posterior(x[sl]).probs.argmax(-1) != y[sl] for sl in _batches(len(x), batch_size)]).double()
    n = len(wrong)
    return {"classification_error": float(wrong.mean()), "classification_error_se": float(wrong.std() / math.sqrt(n)) if n > 1 else float("nan")}


def nll_scores(model, x: torch.Tensor, k: int, seed: int = 0, precision: str = "fp32", progress: bool | None = False) -> dict:
    """NLL = -log p(x) over x (N, *x_shape) with its standard error, bits/dim, ESS, K and N.

    ``nll_se`` is the standard error of the mean over the N examples (sd / sqrt(N));
    ``bits_per_dim`` = NLL / (n_pixels ln 2); ``ess`` is the mean effective sample size of
    the K importance weights per example (K means q(z|x) is the true posterior).
    """
    log_px, ess = log_likelihood(model, x, k, seed=seed, precision=precision, progress=progress)
    n = len(x)
    nll = -log_px.double()
    return {
        "nll": float(nll.mean()),
        "nll_se": float(nll.std() / math.sqrt(n)) if n > 1 else float("nan"),
        "bits_per_dim": float(nll.mean() / (math.prod(model.x_shape) * math.log(2))),
        "ess": float(ess.mean()),
        "k": k,
        "n": n,
    }


def scores(model, x: torch.Tensor, k: int, seed: int = 0, precision: str = "fp32", progress: bool | None = False) -> dict:
    """Test ELBO terms and NLL = -log p(x) with its standard error (``nll_scores``), of one model."""
    return {**elbo_terms(model, x, seed=seed), **nll_scores(model, x, k, seed, precision, progress), "precision": precision, "model": model.family.name}


class Scored(NamedTuple):
    """Which model a run's numbers describe: ``model`` is scored (ELBO, log-likelihood),
    ``view`` read by the dashboard, ``labels`` says how the labels enter (None without)."""

    model: Any
    view: Any
    labels: str | None


def scored_model(model, y: torch.Tensor | None) -> Scored:
    """A conditional VAE given the test labels y (ELBO and -log p(x|y)); M2 (its labels latent)
    by its marginal log p(x) = log sum_y p(y) p(x|y), its dashboard reading q(z|x, y) at the
    test labels; without labels, the model itself."""
    if y is None:
        return Scored(model, model, None)
    view = model.given(y)
    if model.semi_supervised:
        return Scored(model, view, "latent: log p(x) sums over the classes")
    return Scored(view, view, "given: -log p(x|y) at the test labels")


def family_models(model) -> tuple[Any, Any, bool]:
    """(the model of the family that is scored, the discrete model a relaxation stands for or
    None, whether the trained objective mixes a relaxed sample with the discrete KL)."""
    mixed = model.family.scored() is not model.family  # families, not models: a labelled view is new at every call
    discrete = model.family.discrete()
    discrete_model = None if discrete is None or mixed else model.with_family(discrete)  # None: a flow or learned prior
    return model.with_family(model.family.scored()), discrete_model, mixed


def elbo_scores(model, x: torch.Tensor, seed: int, precision: str) -> dict:
    """The test ELBO of the model that is scored, and beside it the trained objective where it
    is no model's bound (``objective``) and the discrete model a relaxation stands for (``discrete``)."""
    scored, discrete_model, mixed = family_models(model)
    out = {**elbo_terms(scored, x, seed=seed), "precision": precision, "model": scored.family.name, "n_test": len(x)}
    if mixed:
        out["objective"] = {"what": "the trained objective: relaxed sample into the decoder, discrete KL", **elbo_terms(model, x, seed=seed)}
    if discrete_model is not None:
        what = "the discrete model this relaxation stands for"
        out["discrete"] = {"what": what, **elbo_terms(discrete_model, x, seed=seed), "precision": precision, "model": discrete_model.family.name}
    return out


def nll_part(model, x: torch.Tensor, k: int | str, seed: int, precision: str, seconds: float, progress: bool | None) -> tuple[dict, dict]:
    """The NLL of the scored model (and of the discrete model beside it) with K samples, ``"auto"``
    fitting it into ``seconds`` (``budget.plan``): (its scores, the discrete model's), and the plan
    under ``nll_plan``. A subset of the images is scored at their own labels (``model.rows``)."""
    scored, discrete_model, _ = family_models(model)
    xs, plan = x, None
    if k == "auto":
        plan = budget.plan(log_likelihood, scored, x, seconds, 1 + (discrete_model is not None), DRAW_EXAMPLES)
        k, xs = plan.k, x if plan.index is None else x[plan.index]
    assert isinstance(k, int), k  # auto is resolved above (config checks the setting)
    if not k:
        return {"nll": None, "nll_se": None, "bits_per_dim": None, "ess": None, "k": 0, "n": 0}, {}
    if plan is not None and plan.index is not None:
        scored, discrete_model, _ = family_models(model.rows(plan.index))
    out = nll_scores(scored, xs, k, seed, precision, progress)
    if plan is not None:
        out["nll_plan"] = plan.describe()
    return out, {} if discrete_model is None else nll_scores(discrete_model, xs, k, seed, precision, progress)


def evaluate(model, x: torch.Tensor, k: int | str, dashboard: bool = True, seed: int = 0, precision: str = "fp32", nll_shift: float | None = None,
             y: torch.Tensor | None = None, budget_seconds: float = 0.0, progress: bool | None = False) -> dict:  # fmt: skip
    """The run's held-out numbers: test ELBO and NLL of the model it defines, and the collapse dashboard.

    The ELBO and the log-likelihood always describe one model, named by ``model``: the
    family's own, or for a relaxed family trained with the discrete KL the discrete model
    (``Family.scored``), whose trained mixed objective is reported apart as ``objective``
    (ELBO terms only: it is no model's bound). A relaxed family trained with its relaxed
    KL also reports the discrete model it relaxes, as ``discrete``. With ``dashboard``,
    adds active units, KL per dimension and I(x; z) (see diagnostics). Every draw (the
    ELBO's, the importance samples', the dashboard's) is seeded by ``seed``: the same call
    gives the same numbers, and the global RNG is left untouched.

    ``k``: importance samples on every image of x; 0 skips the log-likelihood (``nll`` is
    None); ``"auto"`` fits the whole evaluation into ``budget_seconds`` (``budget.plan``:
    K and a fixed subset of the images, described under ``nll_plan``). ``n`` counts the
    images of the NLL, ``n_test`` those of the ELBO and the dashboard.

    ``nll_shift`` (``Data.nll_shift``: sum_j log std_j of a table's standardized columns)
    adds ``nll_original_units`` = nll + shift and ``elbo_original_units`` = elbo - shift:
    the same model's numbers for rows in their original units (the change of variables
    x_std = (x - mean) / std has log |det J| = -sum_j log std_j).

    Which model is scored with the test labels ``y`` is ``scored_model``'s answer: a
    conditional VAE given them, M2 by its marginal with ``classification_error`` of q(y|x);
    ``labels`` says which.
    """
    start = time.perf_counter()
    target = scored_model(model, y)
    out = elbo_scores(target.model, x, seed, precision)
    if target.labels is not None:
        out["labels"] = target.labels
    if target.model.semi_supervised:
        assert y is not None  # M2 is evaluated with the test labels (a conditional run's data carry them)
        out.update(classification(target.model, x, y))
    if dashboard:
        out.update(diagnostics.dashboard(target.view, x))
    nll, discrete = nll_part(target.model, x, k, seed, precision, budget_seconds - (time.perf_counter() - start), progress)
    plan = nll.pop("nll_plan", None)
    out.update(nll)
    if discrete:
        out["discrete"].update(discrete)
    if plan is not None:
        out["nll_plan"] = {**plan, "seconds": round(time.perf_counter() - start, 3)}
    if nll_shift is not None:
        out["elbo_original_units"] = out["elbo"] - nll_shift
        out["nll_original_units"] = None if out["nll"] is None else out["nll"] + nll_shift
    return out
