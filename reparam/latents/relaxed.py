"""What the relaxed discrete families share: a temperature with an annealing schedule.

Relaxed (Concrete / Gumbel-softmax) latents replace a discrete draw by a smooth one
whose sharpness is set by a temperature tau (Maddison, Mnih & Teh 2017; Jang, Gu &
Poole 2017). The pathwise gradient of a relaxed sample is unbiased for the *relaxed*
objective E_q_tau[f(z)], not for the discrete one; lowering tau shrinks that bias and
raises the variance, hence the schedule
    tau(step) = max(tau_min, tau_0 exp(-anneal_rate * step))      (Jang et al. 2017)
applied in ``on_step``, which the trainer calls after every optimizer step.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution

from ..errors import ConfigError
from .base import Family
from .beta import check_positive

KL_MODES = ("relaxed", "discrete")


def check_options(temperature, temperature_min, anneal_rate, prior_temperature, hard, kl) -> None:
    """Raise ConfigError, naming the key, for the first invalid relaxed-family option."""
    check_positive("temperature", temperature)
    check_positive("temperature_min", temperature_min)
    if prior_temperature is not None:
        check_positive("prior_temperature", prior_temperature)
    if isinstance(anneal_rate, bool) or not isinstance(anneal_rate, (int, float)) or anneal_rate < 0:
        raise ConfigError(f"latent.anneal_rate must be a number >= 0 (per step), got {anneal_rate!r}")
    if not isinstance(hard, bool):
        raise ConfigError(f"latent.hard must be true or false, got {hard!r}")
    if kl not in KL_MODES:
        raise ConfigError(f"latent.kl must be one of {', '.join(KL_MODES)}; got {kl!r}")


class RelaxedFamily(Family):
    """Holds tau (a persistent buffer, so an evaluated checkpoint uses the tau it reached).

    Options: ``temperature`` tau_0; ``temperature_min`` the floor of the schedule (never
    above tau_0); ``anneal_rate`` per optimizer step (0: constant tau); ``prior_temperature``
    of the relaxed prior (None: follow tau); ``hard`` straight-through hard samples (the
    decoder sees the discrete value, the gradient is the relaxed one; Bengio et al. 2013,
    Jang et al. 2017); ``kl`` 'relaxed' (Monte Carlo KL between the relaxed posterior and
    prior, Maddison et al. 2017) or 'discrete' (closed-form KL between the discrete
    distributions they relax, Jang et al. 2017).
    """

    def setup(self, temperature, temperature_min, anneal_rate, prior_temperature, hard, kl) -> None:
        check_options(temperature, temperature_min, anneal_rate, prior_temperature, hard, kl)
        self.tau0, self.tau_min = float(temperature), min(float(temperature_min), float(temperature))
        self.anneal_rate, self.hard, self.kl_mode = float(anneal_rate), hard, kl
        self.prior_temperature = None if prior_temperature is None else float(prior_temperature)
        self.register_buffer("temperature_now", torch.tensor(self.tau0))

    def temperature_at(self, step: int) -> float:
        return max(self.tau_min, self.tau0 * math.exp(-self.anneal_rate * step))

    def on_step(self, step: int) -> None:
        self.temperature_now.fill_(self.temperature_at(step))

    def tau(self) -> torch.Tensor:
        """The current posterior temperature, a 0-dim tensor detached from the buffer."""
        return self.temperature_now.detach().clone()

    def prior_tau(self) -> torch.Tensor:
        return self.tau() if self.prior_temperature is None else torch.full_like(self.tau(), self.prior_temperature)

    def discrete_kl(self, q: Distribution) -> torch.Tensor:
        """KL between the discrete distributions behind q and p, (*batch,)."""
        raise NotImplementedError

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        if self.kl_mode == "discrete":
            return self.discrete_kl(q)
        return super().kl(q, z)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, temperature={float(self.temperature_now):g} (from {self.tau0:g} to {self.tau_min:g}, "
            f"rate {self.anneal_rate:g}), hard={self.hard}, kl={self.kl_mode}"
        )
