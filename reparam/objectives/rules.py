"""What an ``objective`` config section may say: the rules live here, with the objectives.

``check(section)`` validates the section alone; ``check_family(section, family)`` against
the chosen latent family. Both raise ConfigError with one line naming the key.
"""

from __future__ import annotations

from ..errors import ConfigError
from . import estimators
from .bounds import BOUNDS, OBJECTIVES, accepted, bounds_for
from .module import warmup_share


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check(cfg) -> None:
    """The section's own rules: name, K, beta, warm-up, free bits, estimator and baseline, bound options."""
    OBJECTIVES.lookup(cfg.name)
    _check(cfg.k >= 1, f"objective.k must be >= 1, got {cfg.k}")
    _check(cfg.beta >= 0, f"objective.beta must be >= 0, got {cfg.beta}")
    if warmup_share(cfg.warmup) is None:  # ConfigError for a malformed share
        _check(isinstance(cfg.warmup, int) and cfg.warmup >= 0, f"objective.warmup must be >= 0 steps or a share of training such as 10%, got {cfg.warmup!r}")
    _check(cfg.free_bits >= 0, f"objective.free_bits (lambda) must be >= 0 nats, got {cfg.free_bits}")
    _check(cfg.free_bits_group >= 1, f"objective.free_bits_group must be >= 1, got {cfg.free_bits_group}")
    takes = accepted(cfg.name)
    _check(
        cfg.free_bits == 0 or "free_bits" in takes,
        f"objective.free_bits applies to a KL term; objective {cfg.name!r} has none (use objective.name=elbo)",
    )
    _check(
        (cfg.estimator, cfg.baseline) == ("auto", "none") or "estimator" in takes,
        f"objective {cfg.name!r} takes no gradient estimator (objective.estimator, objective.baseline)",
    )
    reduction = BOUNDS[cfg.name].reduction(**cfg.options) if cfg.name in BOUNDS else None  # checks the options' values
    if "estimator" in takes:
        estimators.check(cfg.estimator, cfg.baseline, cfg.name, cfg.k, True, reduction=reduction, bounds_for=bounds_for)


def options(name: str) -> dict:
    """The bound's own options (with defaults), config keys ``objective.<option>``."""
    return BOUNDS[name].options() if name in BOUNDS else {}


def check_family(cfg, family, density_everywhere: bool = True) -> None:
    """The bound and estimator against the family: a weighted bound needs the family's KL to be
    KL(q || p) of its own densities; a pathwise estimator needs rsample, STL and DReG a
    posterior density known away from its own draws (``estimators.check``)."""
    mismatch = family.kl_mismatch()
    spec = BOUNDS[cfg.name] if cfg.name in BOUNDS else None
    if spec is not None and not spec.analytic_kl and mismatch:
        raise ConfigError(f"objective.name={cfg.name} weighs samples by p(z) / q(z|x), but {mismatch}; use objective.name=elbo")
    if "estimator" in accepted(cfg.name):  # a custom objective without estimators draws its own z
        reduction = spec.reduction(**cfg.options) if spec is not None else None
        estimators.check(
            cfg.estimator, cfg.baseline, cfg.name, cfg.k, family.has_rsample, f"latent.family={family.name}",
            mismatch, reduction, bounds_for, density_everywhere,
        )  # fmt: skip
