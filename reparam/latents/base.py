"""The base class every latent family derives from, and the registry families join."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, kl_divergence

from ..errors import ConfigError
from ..registry import Registry
from .views import Views

REGISTRY: Registry = Registry("latent family")
register = REGISTRY.register


class Family(Views, nn.Module):
    """A latent distribution family: how raw encoder outputs become q(z|x), and p(z).

    Subclasses set ``n_params`` (raw numbers per latent dimension) and implement
    ``posterior`` and ``prior``. A family is an ``nn.Module`` only so that its prior's
    tensors follow the model across devices; it holds no trainable weights. How the
    report and explorer move through its latents (traversals, interpolations, sliders,
    tempered prior samples) comes from ``Views``: defaults derived from the prior's support.
    """

    name: str = ""
    n_params: int = 1
    dim: int
    _anchor: torch.Tensor  # a buffer (see __init__)

    def __init__(self, dim: int):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"latent.dim must be a positive integer, got {dim!r}")
        self.dim = dim
        # Empty buffer: tells prior() which device and dtype to build on.
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    @property
    def raw_size(self) -> int:
        """How many raw numbers the encoder outputs per example."""
        return self.dim * self.n_params

    @property
    def has_rsample(self) -> bool:
        """Whether the posterior has a reparameterized sample (read from q itself)."""
        raw = torch.zeros(self.raw_size, dtype=self._anchor.dtype, device=self._anchor.device)
        return bool(self.posterior(raw).has_rsample)

    def split(self, raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(*batch, raw_size) -> n_params tensors of shape (*batch, dim)."""
        if raw.shape[-1] != self.raw_size:
            raise ValueError(f"{self.name}: raw has {raw.shape[-1]} columns, expected {self.raw_size}")
        return tuple(raw.unflatten(-1, (self.n_params, self.dim)).unbind(-2))

    def _full(self, value: float) -> torch.Tensor:
        """A (dim,) tensor on the family's device."""
        return torch.full((self.dim,), value, dtype=self._anchor.dtype, device=self._anchor.device)

    def posterior(self, raw: torch.Tensor) -> Distribution:
        """q(z|x) with batch_shape raw.shape[:-1] and event_shape (dim,)."""
        raise NotImplementedError

    def prior(self) -> Distribution:
        """p(z) with batch_shape () and event_shape (dim,)."""
        raise NotImplementedError

    def has_closed_form_kl(self, q: Distribution) -> bool:
        try:
            kl_divergence(q, self.prior())
        except NotImplementedError:
            return False
        return True

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q || p) per example, shape q.batch_shape.

        Closed form when torch has one registered for (type(q), type(p)); otherwise the
        Monte Carlo estimate mean_k [log q(z_k) - log p(z_k)] from samples z of shape
        (K, *batch, dim), which must then be given (as in Pyro's TraceMeanField_ELBO).
        """
        p = self.prior()
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            if z is None:
                raise ValueError(f"{self.name}: no closed-form KL, pass samples z") from None
            return (q.log_prob(z) - p.log_prob(z)).mean(0)

    def kl_per_dim(self, q: Distribution) -> torch.Tensor | None:
        """KL(q_d || p_d) per latent dimension, (*batch, dim), for factorized families.

        Works whenever q and p are ``Independent`` over the last dimension and torch has
        a KL for their base distributions; returns None for families whose dimensions
        are coupled (full-covariance Gaussian, simplex, sphere).
        """
        p = self.prior()
        if not (isinstance(q, Independent) and isinstance(p, Independent)):
            return None
        try:
            return kl_divergence(q.base_dist, p.base_dist)
        except NotImplementedError:
            return None

    def discrete(self) -> Family | None:
        """The discrete family this one relaxes (same raw layout, decoder sees hard values), or None.

        A relaxed family's run also reports the discrete model it relaxes (its ELBO and
        log-likelihood), so relaxation and score function compare on the same model.
        """
        return None

    def scored(self) -> Family:
        """The family whose model a run's ELBO and log-likelihood describe: itself by default.

        A relaxed family trained with the discrete KL (Jang et al. 2017) optimizes a mixed
        objective that is no density model's bound; its numbers describe the discrete model.
        """
        return self

    def log_prob_per_dim(self, d: Distribution, z: torch.Tensor) -> torch.Tensor | None:
        """log d(z_d) per dimension, (*sample, *batch, D), when d is ``Independent`` over the last
        dimension (a factorized posterior or prior); None for coupled dimensions."""
        return d.base_dist.log_prob(z) if isinstance(d, Independent) else None

    def kl_mismatch(self) -> str | None:
        """Why ``kl`` is not KL(q || p) between ``posterior`` and ``prior``, or None when it is.

        Estimators that rewrite the KL as E_q[log q(z|x) - log p(z)] (sticking the landing)
        and bounds that weigh samples by p(z) / q(z|x) (IWAE) need it to be.
        """
        return None

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        """What the decoder sees for latent z (*batch, D): z itself by default.

        A family whose density is best scored in another space overrides it: a relaxed
        Bernoulli lives in logit space and the decoder sees sigmoid(z) (Maddison et al.
        2017, appendix C); a Laplace-approximated Dirichlet decodes softmax(z).
        """
        return z

    def point(self, q: Distribution) -> torch.Tensor:
        """A representative latent of q for pictures and traversals: its mean, (*batch, dim)."""
        return q.mean

    def unit_mean(self, q: Distribution) -> torch.Tensor:
        """The posterior mean of each latent unit as the model uses it, (*batch, dim).

        Active units count the dimensions d with Cov_x(E_q[z_d]) above a threshold (Burda
        et al. 2016), read from this. Default: ``point(q)``. A family whose latent lives
        in another space than the unit it stands for overrides it (a relaxed bit: the
        probability sigmoid(logit), not the logit; a Beta logit: E[z] in (0, 1)).
        """
        return self.point(q)

    def on_step(self, step: int) -> None:
        """Called by the trainer after every optimizer step with the new step count (temperature schedules)."""

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
