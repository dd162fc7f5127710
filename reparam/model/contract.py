"""What every model provides, written once: the ``Model`` protocol, its defaults, and the
model shapes that combine.

Code outside ``reparam.model`` reads a model only through these members, so no caller asks
which kind of model it holds (``tests/model/test_contract.py`` walks the package for such
questions). Shapes: B examples, S leading sample dimensions, D = ``latent_dim`` (the
concatenated latent of every stochastic layer), D_L the top layer's size (the latent the
views drive: pictures, traversals, prior samples), C = ``classes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.distributions import Distribution

from ..errors import ConfigError
from ..latents import Family


@runtime_checkable
class Model(Protocol):
    """A VAE as the bounds, evaluation, the report and the explorer see it.

    The latent: ``x_shape`` (the data's shape, channels-last), ``latent_dim`` D,
    ``layer_dims`` (each stochastic layer's size, bottom first; summing to D), ``raw_size``
    (the inference network's numbers per example), ``family`` (the top layer's family: its
    rules, views and scoring apply), ``density_everywhere`` (whether log q(z|x) can be
    evaluated at any z, not only at q's own draws: False with a flow), ``auto_init`` (what
    ``model.init=auto`` starts the networks with), ``auto_output_bias`` (what
    ``model.output_bias=auto`` starts the decoder's output bias with).

    The labels, with defaults for a model that reads none: ``classes`` C (0 without labels),
    ``class_names`` (the data's, set by ``reparam.runs.load``; None without labels),
    ``semi_supervised`` (the labels can be latent: M2's classifier ``label_posterior(x)``
    = q(y|x)), ``given(y)`` (the model with the labels y (B,), a 0-dim class or relaxed
    one-hots (*S, B, C) fixed: itself without labels), ``per_example_prior`` (``prior()``
    differs between the rows of a batch: a view given one label per example; callers ask
    ``rows(index).prior()`` then).
    """

    x_shape: tuple[int, ...]
    latent_dim: int
    layer_dims: list[int]
    raw_size: int
    family: Family
    density_everywhere: bool
    auto_init: str
    auto_output_bias: str
    classes: int
    class_names: list[str] | None
    semi_supervised: bool
    per_example_prior: bool

    def given(self, y: torch.Tensor) -> Model:
        """The model with the labels y of a minibatch fixed; a model without labels returns itself."""
        ...

    def label_posterior(self, x: torch.Tensor) -> Distribution:
        """q(y|x) as one-hots, batch (B,), event (C,), where ``semi_supervised``; TypeError otherwise."""
        ...

    def rows(self, index: Any) -> Model:
        """The model for the examples ``index`` of a batch (a labelled view picks their labels)."""
        ...

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The inference network's raw numbers for x (B, *x_shape): (B, raw_size), float32
        (a labelled view's with its labels' term)."""
        ...

    def posterior(self, x: torch.Tensor, stop: bool = False) -> Distribution:
        """q(z|x): batch (B,), event (D,); ``stop`` detaches the inference networks' weights."""
        ...

    def prior(self) -> Distribution:
        """p(z): event (D,); batch () (or (B,) with ``per_example_prior``)."""
        ...

    def likelihood(self, z: torch.Tensor) -> Distribution:
        """p(x|z) for z (*S, B, D): batch (*S, B), event x_shape."""
        ...

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) for a top-layer latent (*batch, D_L): (*batch, *x_shape)."""
        ...

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q || p(z)) per example (B,): closed form where registered, else Monte Carlo from
        z (K, B, D) (ValueError without z)."""
        ...

    def kl_per_dim(self, q: Distribution) -> torch.Tensor | None:
        """KL per latent dimension (B, D) where it exists in closed form, else None."""
        ...

    def log_ratio_groups(self, q: Distribution, z: torch.Tensor) -> torch.Tensor | None:
        """log p(z) - log q(z|x) split by stochastic layer, (K, B, L); None with one layer."""
        ...

    def layer_statistics(self, q: Distribution, z: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per layer: unit means [(B, D_l)] and the KL term by Monte Carlo from z (K, B, D): (B, L)."""
        ...

    def log_prob_per_dim(self, d: Distribution, z: torch.Tensor) -> torch.Tensor | None:
        """log d(z_d) per dimension (*S, B, D) where d factorizes, else None."""
        ...

    def point(self, q: Distribution) -> torch.Tensor:
        """A representative top-layer latent of q for pictures, (B, D_L)."""
        ...

    def unit_mean(self, q: Distribution) -> torch.Tensor:
        """The posterior mean of each top-layer unit, (B, D_L), for active units."""
        ...

    def sample_prior(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """n top-layer draws of p(z) at a temperature, (n, D_L), for pictures."""
        ...

    def on_step(self, step: int) -> None:
        """The training step reached (a relaxed family's temperature schedule)."""
        ...

    def with_family(self, family: Family) -> Model | None:
        """The same networks with another family of the same raw layout, or None where the
        model is tied to its family (a flow, a learned prior, a hierarchy)."""
        ...

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The gradient lab's groups: ``encoder`` (inference), ``decoder`` (generation, the
        prior's), and for several layers ``encoder.layer<l>`` (the network into q(z_l))."""
        ...


#: The gradient lab's groups, by the modules that hold them (those a model lacks are skipped).
GROUPS = {"encoder": ("encoder", "flow", "up"), "decoder": ("decoder", "head", "down", "prior_model")}


class Defaults:
    """The members every model shares, with a model without labels' answers; the model
    classes override what their shape changes (see ``Model``)."""

    classes: int = 0
    class_names: list[str] | None = None
    per_example_prior: bool = False

    @property
    def semi_supervised(self) -> bool:
        return False

    @property
    def density_everywhere(self) -> bool:
        return True

    @property
    def x_shape(self) -> tuple[int, ...]:
        return self.head.x_shape  # type: ignore[attr-defined]

    @property
    def latent_dim(self) -> int:
        return sum(self.layer_dims)

    @property
    def layer_dims(self) -> list[int]:
        """Sizes of the stochastic layers, bottom first (one here)."""
        return [self.family.dim]  # type: ignore[attr-defined]

    @property
    def auto_init(self) -> str:
        """He's start, unless the encoder's measurements asked for another (``reparam.model.init``)."""
        return getattr(self.encoder, "auto_init", None) or "he"  # type: ignore[attr-defined]

    #: What ``model.output_bias=auto`` starts the decoder's output bias with (``reparam.model.init.output_bias``).
    auto_output_bias: str = "init"

    def given(self, y: torch.Tensor):
        """Itself: a model without labels reads none."""
        return self

    def rows(self, index):
        """The model for examples ``index`` of a batch: itself (a labelled view picks their labels)."""
        return self

    def label_posterior(self, x: torch.Tensor) -> Distribution:
        raise TypeError("q(y|x) needs the classifier of a semi-supervised model (data.labeled)")

    def kl_per_dim(self, q: Distribution) -> torch.Tensor | None:
        return None

    def log_ratio_groups(self, q: Distribution, z: torch.Tensor) -> torch.Tensor | None:
        return None

    def log_prob_per_dim(self, d: Distribution, z: torch.Tensor) -> torch.Tensor | None:
        return None

    def layer_statistics(self, q: Distribution, z: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One layer: its unit means [(B, D)] and its KL (B, 1), Monte Carlo from z (K, B, D) where no closed form exists."""
        return [self.unit_mean(q)], self.kl(q, z).unsqueeze(-1)  # type: ignore[attr-defined]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        out = {}
        for group, names in GROUPS.items():
            modules = [m for m in (getattr(self, n, None) for n in names) if isinstance(m, nn.Module)]
            out[group] = [p for m in modules for p in m.parameters()]
        return out


#: Model shapes that do not combine, each with the one line that refuses it:
#: (what the config asks for, why not). ``check_shape`` reads a config against it.
REFUSED: list[tuple[Callable[[Any], bool], str]] = [
    (lambda cfg: bool(cfg.model.stochastic) and cfg.latent.flow != "none",
     "latent.flow applies to a one-layer model; drop model.stochastic or latent.flow"),
    (lambda cfg: bool(cfg.model.stochastic) and cfg.prior.name not in ("standard", "mog"),  # mog: p(z_L), the top layer's
     "prior.name={prior} applies to a one-layer model; drop model.stochastic or prior.name"),
    (lambda cfg: bool(cfg.model.stochastic) and cfg.model.condition == "label",
     "model.condition=label applies to a one-layer model; drop model.stochastic or model.condition"),
]  # fmt: skip


def check_shape(cfg) -> None:
    """ConfigError (one line) for the first refused combination of model shapes."""
    for asks, why in REFUSED:
        if asks(cfg):
            raise ConfigError(why.format(prior=cfg.prior.name))
