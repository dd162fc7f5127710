"""The gradient-variance lab: how noisy is each estimator's gradient, on your own model?

For one fixed minibatch x (B, *x_shape) and each estimator e, draw M independent
gradient estimates g_1..g_M of grad_params (-mean_b bound_b) (each a fresh set of K
samples per example) and report, per parameter j, the mean m_j = mean_i g_ij and the
unbiased variance s_j^2 = sum_i (g_ij - m_j)^2 / (M - 1); then, overall and per layer
group (encoder, decoder):

    variance  = mean_j s_j^2                       (the mean over parameters)
    snr       = mean_j |m_j| / s_j                 (over parameters with s_j > 0;
                                                    Rainforth et al. 2018 use the same ratio)
    cosine    = <m, m_pathwise> / (|m| |m_pathwise|)   (mean gradients, all parameters)
    seconds   = wall time per estimate (forward, backward, bookkeeping)

Parameters of a score-function baseline (the training objective's state) are trained
alongside but are not part of the model's gradient and are left out. The mean gradient is an
estimate itself: with M replicates its standard error per parameter is s_j / sqrt(M).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from .. import objectives
from ..model import VAE
from ..objectives import baseline_module, estimators

WARMUP = 20  # estimates that warm up a fresh moving-average baseline (not measured)
#: The groups that hold every parameter once: inference and generation (``Model.parameter_groups``).
WHOLE = ("encoder", "decoder")


def parse_spec(spec: str) -> dict[str, str]:
    """'score:loo' -> {'estimator': 'score', 'baseline': 'loo'}; 'stl' -> baseline 'none'."""
    estimator, _, baseline = spec.partition(":")
    return {"estimator": estimator.strip(), "baseline": baseline.strip() or "none"}


def default_specs(has_rsample: bool, ocfg, k: int, kl_mismatch: str | None = None, density_everywhere: bool = True) -> list[str]:
    """Every estimator (and score baseline) that applies to this family, the bound of the
    ``objective`` config section ``ocfg``, and K.

    Pathwise first (the reference); ``iwae`` is left out, being pathwise on the IWAE bound.
    """
    ok = set(estimators.supported(has_rsample, objectives.reduction(ocfg), k, kl_mismatch, density_everywhere))
    specs: list[str] = [name for name in ("pathwise", "stl", "dreg") if name in ok]
    if "score" in ok:
        specs += ["score", "score:moving_average", "score:nvil"] + (["score:loo"] if k > 1 else [])
    return specs


def check_specs(
    specs: list[str], has_rsample: bool, ocfg, k: int, family: str, kl_mismatch: str | None = None, density_everywhere: bool = True
) -> None:
    """ConfigError (one line) for the first spec that does not apply."""
    for spec in specs:
        s = parse_spec(spec)
        estimators.check(
            s["estimator"], s["baseline"], ocfg.name, k, has_rsample, f"latent.family={family}", kl_mismatch,
            objectives.reduction(ocfg), objectives.bounds_for, density_everywhere,
        )  # fmt: skip


def groups(model) -> dict[str, list[nn.Parameter]]:
    """The model's trainable parameters by group (``Model.parameter_groups``): encoder (inference),
    decoder (generation) and, for a hierarchical model, each layer's inference network apart."""
    return {group: [p for p in params if p.requires_grad] for group, params in model.parameter_groups().items()}


def _flat(params: list[nn.Parameter]) -> torch.Tensor:
    """The current .grad of params as one float64 vector (zeros where no gradient arrived)."""
    parts = [torch.zeros(p.numel(), dtype=torch.float64) if p.grad is None else p.grad.detach().flatten().double() for p in params]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def gradient_stats(step: Callable[[], None], param_groups: dict[str, list], replicates: int) -> dict:
    """Run ``step`` (which must leave fresh gradients in .grad) M times; moments per group.

    Returns {'groups': {name: {'mean': (P,), 'var': (P,)}}, 'seconds': per estimate}.
    Sums are kept in float64, so memory stays O(parameters) for any M.
    """
    if replicates < 2:
        raise ValueError("gradient_stats needs at least 2 replicates")
    sums = {g: [torch.zeros(()), torch.zeros(())] for g in param_groups}  # sum of v, of v^2
    start = time.perf_counter()
    for _ in range(replicates):
        step()
        for g, params in param_groups.items():
            v = _flat(params)
            sums[g][0] = sums[g][0] + v
            sums[g][1] = sums[g][1] + v * v
    seconds = (time.perf_counter() - start) / replicates
    out = {}
    for g, (s1, s2) in sums.items():
        mean = s1 / replicates
        var = ((s2 - replicates * mean * mean) / (replicates - 1)).clamp_min(0.0)
        out[g] = {"mean": mean, "var": var}
    return {"groups": out, "seconds": seconds}


def whole(stats: dict, key: str) -> torch.Tensor:
    """``key`` ('mean' or 'var') of every parameter once: the encoder and decoder groups (the others overlap them)."""
    return torch.cat([stats["groups"][g][key] for g in WHOLE if g in stats["groups"]])


def summarize(stats: dict) -> dict:
    """Scalars from gradient_stats: variance and SNR overall and per group."""
    mean, var = whole(stats, "mean"), whole(stats, "var")
    out = {**_scalars(mean, var), "seconds_per_estimate": stats["seconds"], "groups": {}}
    for g, s in stats["groups"].items():
        out["groups"][g] = _scalars(s["mean"], s["var"])
    return out


def _scalars(mean: torch.Tensor, var: torch.Tensor) -> dict:
    std = var.sqrt()
    ok = std > 0
    snr = float((mean[ok].abs() / std[ok]).mean()) if bool(ok.any()) else math.nan
    return {"variance": float(var.mean()) if len(var) else math.nan, "snr": snr, "parameters": int(len(var))}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-300))


def baseline_for(state: nn.Module | None, baseline: str, model: VAE) -> tuple[nn.Module | None, bool]:
    """The state the baseline needs for this measurement: ``state`` if it is of the right
    kind (the run's trained baseline), else a fresh one (then the flag is True): an
    untrained NVIL network (close to no baseline at all), or a moving average that
    :func:`measure_one` first warms up on WARMUP estimates. None where the baseline keeps none."""
    fresh = baseline_module(baseline, model.x_shape)
    if fresh is None:
        return None, False
    if isinstance(state, type(fresh)):
        return state, False
    return fresh.to(next(model.parameters()).device), True


def measure_one(model: VAE, objective, x: torch.Tensor, kwargs: dict, replicates: int, state: nn.Module | None = None) -> dict:
    """gradient_stats for one estimator: step = backward of -mean(surrogate) on x.

    ``state`` is the run's baseline module (the training objective's), used where it fits.
    """
    baseline_state, fresh = baseline_for(state, kwargs["baseline"], model)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        bound, _ = objective(model, x, baseline_state=baseline_state, **kwargs)
        (-bound.mean()).backward()

    was_training = baseline_state.training if baseline_state is not None else False
    if baseline_state is not None:
        baseline_state.train(fresh)  # a fresh moving average learns the signal's level first; a trained one is read
    for _ in range(WARMUP if fresh else 1):  # also keeps first-call overheads out of the timing
        step()
    if baseline_state is not None:
        baseline_state.eval()
    stats = gradient_stats(step, groups(model), replicates)
    if baseline_state is not None:
        baseline_state.train(was_training)
    model.zero_grad(set_to_none=True)
    return stats


def measure(model: VAE, ocfg, x: torch.Tensor, specs: list[str], replicates: int, k: int | None = None, state: nn.Module | None = None) -> dict:
    """The lab's numbers for each spec ('pathwise', 'score:loo', ...) on minibatch x.

    ``ocfg`` is the run's ObjectiveConfig (bound and its options, K, beta after warm-up,
    free bits); ``k`` overrides K; ``state`` is the run's trained baseline module, if any.
    The model is measured in eval mode (a moving-average baseline is read, not updated)
    and returned in the mode it came in.
    """
    k = k or ocfg.k
    objective = objectives.lookup(ocfg.name)
    after_warmup = objectives.call_kwargs(ocfg, sys.maxsize, progress=1.0)  # at any warm-up's end: beta itself
    base = {key: v for key, v in after_warmup.items() if key not in ("estimator", "baseline")}
    base["k"] = k
    was_training, rows, ref = model.training, {}, None
    model.eval()
    try:
        for spec in specs:
            stats = measure_one(model, objective, x, {**base, **parse_spec(spec)}, replicates, state)
            row = summarize(stats)
            mean = whole(stats, "mean")
            if spec == "pathwise" or (spec == "iwae" and ref is None):
                ref = mean
            rows[spec] = (row, mean)
    finally:
        model.train(was_training)
    for row, mean in rows.values():
        row["cosine_pathwise"] = None if ref is None else cosine(mean, ref)
    result = {name: row for name, (row, _) in rows.items()}
    return {"objective": ocfg.name, "k": k, "batch": len(x), "replicates": replicates, "estimators": result}


# --- where the lab runs: a run's checkpoint, a config at initialization, a training run --


def fixed_batch(train_x: torch.Tensor, cfg, batch: int, seed: int = 0) -> torch.Tensor:
    """The first ``batch`` training images, binarized once with a fixed seed if the data
    is dynamically binarized (every estimate then sees the very same x)."""
    from .. import data as data_mod

    x = data_mod.unit(train_x[:batch])
    if cfg.data.binarize == "dynamic":
        x = data_mod.binarize(x, torch.Generator(device=x.device).manual_seed(seed))
    return x


def training_hooks(trainer) -> list[Callable[[dict], None]]:
    """With ``train.gradvar_every = N`` > 0: a hook that measures every N epochs.

    The hook appends one JSON line per measurement to RUN/gradvar.jsonl (epoch, step,
    and the numbers of :func:`measure` for every estimator that applies). It draws from
    its own seeded random stream, so training continues exactly as without it.
    """
    cfg = trainer.cfg
    dist = getattr(trainer, "dist", None)
    if not cfg.train.gradvar_every or (dist is not None and dist.enabled):  # one process only
        return []
    x = fixed_batch(trainer.batches.train_x, cfg, min(cfg.train.batch_size, len(trainer.batches.train_x)), cfg.seed)
    has = estimators.has_rsample(trainer.model.family)
    model = trainer.model
    specs = default_specs(has, cfg.objective, cfg.objective.k, model.family.kl_mismatch(), model.density_everywhere)

    def hook(record: dict) -> None:
        if record["epoch"] % cfg.train.gradvar_every:
            return
        with torch.random.fork_rng(devices=[x.device.index or 0] if x.is_cuda else []):
            torch.manual_seed(cfg.seed + record["epoch"])
            result = measure(trainer.model, cfg.objective, x, specs, cfg.train.gradvar_replicates, state=trainer.objective.baseline)
        append_jsonl(trainer.run_dir / "gradvar.jsonl", {"epoch": record["epoch"], "step": record["step"], **result})

    return [hook]


def append_jsonl(path, obj: dict) -> None:
    """Rewrite the JSON-lines file atomically with one more line."""
    import json

    from ..files import atomic_write_bytes, read_jsonl

    lines = read_jsonl(path) + [obj]
    atomic_write_bytes(path, "".join(json.dumps(o, sort_keys=True) + "\n" for o in lines).encode())
