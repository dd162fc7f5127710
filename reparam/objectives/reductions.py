"""How a bound combines K per-sample values v_k (K, B) into one number per example (B,).

The shape contract puts the sample dimension first, so every bound is a reduction over
dim 0 and nothing else: the mean (the ELBO), log-mean-exp (IWAE, Burda et al. 2016) or the
Renyi family between them (Li & Turner 2016). Estimators read a reduction's ``value`` and,
for the score function, each sample's ``share`` of the learning signal.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError


class Reduction:
    """v (K, B) -> (B,) over dim 0; ``share`` is each sample's learning signal without a baseline."""

    name = ""

    def value(self, v: torch.Tensor, dim: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def share(self, v: torch.Tensor) -> torch.Tensor:
        """(K, B): the value, the same for every sample (a reduction that does not split over samples)."""
        return self.value(v).expand_as(v)

    def __repr__(self) -> str:
        return self.name


class Mean(Reduction):
    """mean_k v_k: each sample's share is its own v_k / K (the ELBO's local learning signal)."""

    name = "mean"

    def value(self, v: torch.Tensor, dim: int = 0) -> torch.Tensor:
        return v.mean(dim)

    def share(self, v: torch.Tensor) -> torch.Tensor:
        return v / len(v)


class LogMeanExp(Reduction):
    """log mean_k exp(v_k) = logsumexp_k v_k - log K, in log space (no weight overflows)."""

    name = "logmeanexp"

    def value(self, v: torch.Tensor, dim: int = 0) -> torch.Tensor:
        return torch.logsumexp(v, dim) - math.log(v.shape[dim])


class Renyi(Reduction):
    """1/(1 - alpha) log mean_k exp((1 - alpha) v_k) for alpha in [0, 1] (Li & Turner 2016, eq. 9).

    alpha = 0 is log-mean-exp (IWAE's L_K) and alpha = 1 the mean (the ELBO, the limit as
    alpha -> 1). For v_k = log w_k the value falls as alpha rises, and for alpha in [0, 1]
    it is a lower bound on log p(x) in expectation; alpha < 0 can rise above it, so it is refused.
    """

    name = "renyi"

    def __init__(self, alpha: float):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"objective.alpha must be a number in [0, 1] (0: IWAE, 1: the ELBO), got {alpha!r}")
        self.alpha = float(alpha)

    def value(self, v: torch.Tensor, dim: int = 0) -> torch.Tensor:
        if self.alpha == 1.0:
            return v.mean(dim)
        s = 1.0 - self.alpha
        return (torch.logsumexp(s * v, dim) - math.log(v.shape[dim])) / s

    def __repr__(self) -> str:
        return f"renyi(alpha={self.alpha:g})"


MEAN, LOGMEANEXP = Mean(), LogMeanExp()
