"""What the relaxed discrete families share: a temperature with an annealing schedule, and two objectives.

Relaxed (Concrete / Gumbel-softmax) latents replace a discrete draw by a smooth one
whose sharpness is set by a temperature tau (Maddison, Mnih & Teh 2017; Jang, Gu &
Poole 2017). The pathwise gradient of a relaxed sample is unbiased for the *relaxed*
reconstruction term E_q_tau[f(z)], not for the discrete one; lowering tau shrinks that
bias and raises the variance, hence the schedule
    tau(step) = max(tau_min, tau_0 exp(-anneal_rate * step))      (Jang et al. 2017)
applied in ``on_step``, which the trainer calls after every optimizer step.

Two objectives, chosen by ``kl``:

- ``discrete`` (the default; Jang et al. 2017): the relaxed sample feeds the decoder and
  the KL is the closed-form KL between the discrete posterior and prior. This mixed
  objective is no density model's bound, so the run's ELBO and log-likelihood describe
  the discrete model it trains (hard values into the decoder; ``Family.scored``), and
  the mixed objective is reported beside them.
- ``relaxed`` (Maddison et al. 2017): the ELBO of the relaxed model itself, KL by Monte
  Carlo between the relaxed posterior and a relaxed prior scored in logit space; its
  numbers describe that relaxed model, and the discrete model it stands for is reported
  beside them. The prior has its own fixed temperature (Maddison et al. 2017, appendix
  D.5: 1/2 for bits, 2/3 for 4 classes, 2/5 for 8; 1/(K - 1) otherwise, their guideline).
  A prior tied to tau would make the relaxed KL exactly invariant to tau and linear in
  the logits' confidence, so annealing would never bring it closer to the discrete KL.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution

from ..errors import ConfigError
from .base import Family
from .beta import check_positive

KL_MODES = ("relaxed", "discrete")


#: Maddison et al. (2017), appendix D.5: the best prior temperature for K classes.
PRIOR_TEMPERATURES = {2: 1 / 2, 4: 2 / 3, 8: 2 / 5}


def default_prior_temperature(classes: int) -> float:
    """The relaxed prior's temperature for K classes: the paper's best, else 1/(K - 1)."""
    return PRIOR_TEMPERATURES.get(classes, 1 / (classes - 1))


def check_options(temperature, temperature_min, anneal_rate, prior_temperature, hard, kl) -> None:
    """Raise ConfigError, naming the key, for the first invalid relaxed-family option."""
    check_positive("temperature", temperature)
    check_positive("temperature_min", temperature_min)
    if prior_temperature is not None:
        check_positive("prior_temperature", prior_temperature)
        if kl == "discrete":
            raise ConfigError("latent.prior_temperature applies to latent.kl=relaxed (the discrete KL has no relaxed prior)")
    if isinstance(anneal_rate, bool) or not isinstance(anneal_rate, (int, float)) or anneal_rate < 0:
        raise ConfigError(f"latent.anneal_rate must be a number >= 0 (per step), got {anneal_rate!r}")
    if not isinstance(hard, bool):
        raise ConfigError(f"latent.hard must be true or false, got {hard!r}")
    if kl not in KL_MODES:
        raise ConfigError(f"latent.kl must be one of {', '.join(KL_MODES)}; got {kl!r}")


class RelaxedFamily(Family):
    """Holds tau (a persistent buffer, so an evaluated checkpoint uses the tau it reached).

    Options: ``temperature`` tau_0; ``temperature_min`` the floor of the schedule (never
    above tau_0); ``anneal_rate`` per optimizer step (0: constant tau); ``hard``
    straight-through hard samples (the decoder sees the discrete value, the gradient is
    the relaxed one; Bengio et al. 2013, Jang et al. 2017); ``kl`` 'discrete' (default) or
    'relaxed' (see the module docstring); ``prior_temperature``, with kl='relaxed' only,
    the relaxed prior's fixed temperature (None: ``default_prior_temperature``).
    """

    def setup(self, temperature, temperature_min, anneal_rate, prior_temperature, hard, kl, classes: int = 2) -> None:
        check_options(temperature, temperature_min, anneal_rate, prior_temperature, hard, kl)
        self.tau0, self.tau_min = float(temperature), min(float(temperature_min), float(temperature))
        self.anneal_rate, self.hard, self.kl_mode = float(anneal_rate), hard, kl
        self.prior_temperature = default_prior_temperature(classes) if prior_temperature is None else float(prior_temperature)
        self.temperature_now: torch.Tensor
        self.register_buffer("temperature_now", torch.tensor(self.tau0))

    def temperature_at(self, step: int) -> float:
        return max(self.tau_min, self.tau0 * math.exp(-self.anneal_rate * step))

    def on_step(self, step: int) -> None:
        self.temperature_now.fill_(self.temperature_at(step))

    def tau(self) -> torch.Tensor:
        """The current posterior temperature, a 0-dim tensor detached from the buffer."""
        return self.temperature_now.detach().clone()

    def prior_tau(self) -> torch.Tensor:
        return torch.full_like(self.tau(), self.prior_temperature)

    def discrete_kl(self, q: Distribution) -> torch.Tensor:
        """KL between the discrete distributions behind q and p, (*batch,)."""
        raise NotImplementedError

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        if self.kl_mode == "discrete":
            return self.discrete_kl(q)
        return super().kl(q, z)

    def kl_mismatch(self) -> str | None:
        if self.kl_mode == "discrete":
            return "latent.kl=discrete scores the KL of the discrete distributions behind q and p, not of their relaxations"
        return None

    def discrete(self) -> Family:
        """The exact family (same logits, hard values into the decoder), on this family's device."""
        return self.exact().to(self._anchor.device)

    def exact(self) -> Family:
        raise NotImplementedError

    def scored(self) -> Family:
        """With kl='discrete' the run's numbers describe the discrete model (see Family.scored)."""
        return self.discrete() if self.kl_mode == "discrete" else self

    def extra_repr(self) -> str:
        prior = f", prior temperature {self.prior_temperature:g}" if self.kl_mode == "relaxed" else ""
        return (
            f"dim={self.dim}, temperature={float(self.temperature_now):g} (from {self.tau0:g} to {self.tau_min:g}, "
            f"rate {self.anneal_rate:g}), hard={self.hard}, kl={self.kl_mode}{prior}"
        )
