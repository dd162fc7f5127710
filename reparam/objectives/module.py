"""The training objective as a module: a bound, its estimator, its schedule and its state.

In the spirit of Pyro's ``ELBOModule``: the trainer holds one :class:`Objective` and calls
it on each minibatch; the module owns what the objective keeps between steps (a score
function's moving average or learned NVIL baseline), so the optimizer trains it and the
trainer's state_dict carries it, while the VAE holds networks only. The loss is
``-bound.mean()``, the one reduction over the batch, taken by the trainer.
"""

from __future__ import annotations

import functools
import re

import torch
from torch import nn

from ..errors import ConfigError
from . import labels
from .baselines import baseline_module
from .bounds import OBJECTIVES, Terms
from .free_bits import BatchMean


@functools.cache  # read at every training step: the text is parsed once
def warmup_share(warmup: int | str) -> float | None:
    """A warm-up given as a share of training (``"10%"``) as a fraction in (0, 1]; None for a
    count of steps. ConfigError (one line) for any other text."""
    if not isinstance(warmup, str):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*", warmup)
    if match is None or not 0 < float(match.group(1)) <= 100:
        raise ConfigError(f"objective.warmup must be a number of steps (2000) or a share of training above 0% and at most 100% (10%), got {warmup!r}")
    return float(match.group(1)) / 100


def beta_at(cfg, step: int, progress: float | None = None) -> float:
    """KL weight at step ``step`` (0-based), linear warm-up from 0 to beta.

    Sonderby et al. (2016), Bowman et al. (2016): the KL weight rises from 0 to beta over
    the first ``cfg.warmup`` optimizer steps, or over the first share of training
    (``"10%"``) measured by ``progress`` in [0, 1], the training progress the learning rate
    follows (``optim.progress``: steps of train.epochs, or time under train.budget, so the
    warm-up takes the same share of a budget on a fast host as on a slow one). ``warmup = 0``
    gives beta from the start.
    """
    share = warmup_share(cfg.warmup)
    if share is not None:
        if progress is None:
            raise ValueError(f"objective.warmup={cfg.warmup!r} is a share of training: beta_at needs the training progress")
        return float(cfg.beta) * min(1.0, progress / share)
    if cfg.warmup <= 0:
        return float(cfg.beta)
    return float(cfg.beta) * min(1.0, step / cfg.warmup)


def call_kwargs(cfg, step: int, batch_mean: BatchMean | None = None, progress: float | None = None) -> dict:
    """Keyword arguments for the configured objective at training step ``step`` (and training
    ``progress`` in [0, 1], which a warm-up given as a share of training reads).

    The one place where objective schedules live, so the trainer stays generic. ``cfg`` is
    the ``objective`` config section (its bound's own options in ``cfg.options``);
    ``batch_mean`` averages a (B, G) tensor over the global batch (several processes);
    free bits choose their mask with it.
    """
    kwargs = {"k": cfg.k, "beta": beta_at(cfg, step, progress), **getattr(cfg, "options", {})}
    if (cfg.estimator, cfg.baseline) != ("auto", "none"):
        kwargs.update(estimator=cfg.estimator, baseline=cfg.baseline)
    if cfg.free_bits > 0:
        kwargs.update(free_bits=cfg.free_bits, free_bits_group=cfg.free_bits_group)
        if batch_mean is not None:
            kwargs.update(batch_mean=batch_mean)
    return kwargs


def schedule_warning(cfg, total_steps: int) -> str | None:
    """A one-line warning if a KL warm-up of so many steps does not finish within ``total_steps``
    (one given as a share of training always finishes with it)."""
    if warmup_share(cfg.warmup) is None and cfg.warmup > total_steps:
        reached = beta_at(cfg, total_steps)
        return (
            f"objective.warmup={cfg.warmup} steps is longer than the {total_steps} steps trained; "
            f"the KL weight only reached {reached:.3g} of beta={cfg.beta:g}"
        )
    return None


class Objective(nn.Module):
    """The configured bound on a minibatch, with its estimators' state (``baseline``,
    ``label_baseline``, or None).

    ``Objective(cfg, x_shape)(model, batch, step, progress=t)`` -> (bound (B,), terms): the surrogate
    whose value is the bound and whose gradient is the estimator's (see ``estimators.py``).
    ``batch`` is images x (B, *x_shape), or a minibatch with labels (``labels.Labelled``
    for a conditional VAE, ``labels.SemiSupervised`` for M2: per-row contributions whose
    mean is M2's objective).
    """

    def __init__(self, cfg, x_shape: tuple[int, ...]):
        super().__init__()
        self.cfg = cfg
        self.fn = OBJECTIVES.lookup(cfg.name)
        self.baseline = baseline_module(cfg.baseline, tuple(x_shape))  # None: no state to keep
        self.label_baseline = labels.label_baseline_module(cfg, tuple(x_shape))

    def forward(self, model: nn.Module, batch, step: int = 0, batch_mean: BatchMean | None = None,
                progress: float | None = None) -> tuple[torch.Tensor, Terms]:  # fmt: skip
        kwargs = call_kwargs(self.cfg, step, batch_mean, progress)
        if self.baseline is not None:
            kwargs["baseline_state"] = self.baseline
        if isinstance(batch, labels.Labelled):
            return labels.conditional(self.fn, model, batch, **kwargs)
        if isinstance(batch, labels.SemiSupervised):
            kwargs.pop("batch_mean", None)  # free bits choose their mask on each part's own rows
            return labels.semi_supervised(self.fn, model, batch, self.cfg, self.label_baseline, **kwargs)
        return self.fn(model, batch, **kwargs)
