"""Free bits (Kingma et al. 2016, eq. 15): a floor under the KL of each latent group."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution

from ..errors import ConfigError

BatchMean = Callable[[torch.Tensor], torch.Tensor]


class FreeBits:
    """Free bits on one minibatch: the KL per group, and which groups sit above the floor.

    The bound's KL term becomes sum_g max(lambda, E_batch[KL_g]), where KL_g is the KL of
    latent group g (``group`` consecutive dimensions; 1 = per dimension) and the max is
    taken on the minibatch average, as in the paper. It is written per example as
    sum_g (KL_bg if E_batch[KL_g] > lambda else lambda), whose batch mean equals the
    paper's term exactly, so a group below lambda gets zero gradient. The batch is read
    only to choose that mask, through ``batch_mean`` ((B, G) -> (G,), the plain mean by
    default; under several processes the mean over the global batch). Families without a
    per-dimension KL (coupled dimensions, Monte Carlo KL) get the floor on the total KL:
    max(lambda * D, E_batch[KL]), one group. A model with stochastic layers (given its draws
    ``z``) gets one floor per layer, lambda * D_l, on the Monte Carlo KL term of that layer
    (``model.log_ratio_groups``), as Kingma et al. (2016) floored each group of their hierarchy:
    an upper layer below its floor costs nothing, so the model is not pushed to shut it off.
    """

    def __init__(self, model, q: Distribution, kl: torch.Tensor, lam: float, group: int = 1, batch_mean: BatchMean | None = None,
                 z: torch.Tensor | None = None):  # fmt: skip
        per_dim = model.kl_per_dim(q)  # (B, D) or None
        per_layer = None if per_dim is not None or z is None else model.log_ratio_groups(q, z)  # (K, B, L) or None
        self.group = None if per_dim is None else group
        self.layered = per_layer is not None
        self.floor: float | torch.Tensor
        if per_layer is not None:  # a hierarchy: each layer's KL floored at lambda * its units
            self.parts = -per_layer.mean(0)  # (B, L)
            self.floor = lam * torch.tensor(model.layer_dims, dtype=self.parts.dtype, device=self.parts.device)
        elif per_dim is None:
            self.parts, self.floor = kl.unsqueeze(-1), lam * model.latent_dim  # (B, 1)
        else:
            d = per_dim.shape[-1]
            if d % group:
                raise ConfigError(f"objective.free_bits_group={group} does not divide latent.dim={d}")
            self.parts, self.floor = per_dim.unflatten(-1, (d // group, group)).sum(-1), lam  # (B, G)
        mean = batch_mean(self.parts.detach()) if batch_mean is not None else self.parts.detach().mean(0)
        self.above = mean > self.floor  # (G,)

    def penalty(self) -> torch.Tensor:
        """The floored KL per example, (B,)."""
        return torch.where(self.above, self.parts, torch.as_tensor(self.floor, dtype=self.parts.dtype).expand_as(self.parts)).sum(-1)

    def floor_part(self) -> torch.Tensor:
        """The floors of the groups below them: the penalty's constant part, a 0-dim tensor."""
        return (self.floor * (~self.above).to(self.parts.dtype)).sum()

    def active(self, per_dim: torch.Tensor | None, total: torch.Tensor) -> torch.Tensor:
        """The part of a per-sample KL-like term that the bound keeps: the groups above the floor.

        per_dim (*S, B, D) (used when the KL is per dimension) or total (*S, B); returns (*S, B).
        """
        if self.layered:  # per_dim: log p - log q per layer, (*S, B, L)
            assert per_dim is not None, "layered free bits need the per-layer log ratios"
            return (per_dim * self.above).sum(-1)
        if self.group is None:
            return total * self.above[0]
        assert per_dim is not None, "grouped free bits need the per-dimension KL"
        return (per_dim.unflatten(-1, (-1, self.group)).sum(-1) * self.above).sum(-1)


def free_bits_kl(model, q: Distribution, kl: torch.Tensor, lam: float, group: int = 1, batch_mean: BatchMean | None = None) -> torch.Tensor:
    """KL with free bits (Kingma et al. 2016, eq. 15), per example (B,): see :class:`FreeBits`."""
    return FreeBits(model, q, kl, lam, group, batch_mean).penalty()
