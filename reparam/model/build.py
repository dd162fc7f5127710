"""Assemble a VAE from a resolved config."""

from __future__ import annotations

import torch
from torch import nn

from .. import flows, latents, likelihoods, priors
from ..errors import ConfigError, require
from ..networks import ARCHS, mlp
from .conditional import ConditionalVAE
from .contract import check_shape
from .hierarchical import HierarchicalVAE
from .init import initialize, output_bias
from .vae import VAE


def layer_sizes(cfg) -> list[int]:
    """Stochastic layer sizes, bottom first: latent.dim, then model.stochastic."""
    return [cfg.latent.dim, *cfg.model.stochastic]


def check(cfg) -> None:
    """The model sections together (ConfigError, one line): the shapes that combine
    (``contract.REFUSED``), a hierarchy's layers against the family."""
    require(cfg.prior.name != "label" or cfg.prior.components == 0, "prior.name=label has one component per class: drop prior.components")
    check_shape(cfg)
    if not cfg.model.stochastic:
        return
    for layer, dim in enumerate(layer_sizes(cfg)[1:], start=2):
        try:
            family = latents.get(cfg.latent.family, dim, **cfg.latent.options)
        except ConfigError as e:
            raise ConfigError(f"model.stochastic: layer {layer} of {dim} units: {e}") from None
    if not family.has_rsample or family.kl_mismatch():
        why = family.kl_mismatch() or f"latent.family={family.name} has no reparameterized sample"
        raise ConfigError(f"model.stochastic stacks layers that are drawn and scored in sequence, but {why}")


def build_hierarchical(cfg, x_shape: tuple[int, ...], encoder: nn.Module | None, decoder: nn.Module | None, columns=None) -> HierarchicalVAE:
    """Layers z_1..z_L of ``layer_sizes(cfg)``, networks between consecutive layers of
    ``model.stochastic_hidden`` (default: two of twice the upper layer's size), ``prior.name``
    the top layer's p(z_L)."""
    fams = [latents.get(cfg.latent.family, d, **cfg.latent.options) for d in layer_sizes(cfg)]
    head = likelihoods.get(cfg.likelihood.name, x_shape, columns, **cfg.likelihood.options)
    enc, dec = ARCHS.lookup(cfg.model.arch)(cfg.model, tuple(x_shape), fams[0].raw_size, fams[0].dim, head.raw_size)
    up: list[nn.Module] = []
    down: list[nn.Module] = []
    for below, above in zip(fams[:-1], fams[1:]):
        hidden = list(cfg.model.stochastic_hidden) or [2 * above.dim, 2 * above.dim]
        up.append(mlp([below.dim, *hidden, above.raw_size], cfg.model.activation))
        down.append(mlp([above.dim, *hidden, below.raw_size], cfg.model.activation))
    prior = priors.get(cfg.prior.name, fams[-1], x_shape, cfg.prior.components)  # p(z_L)
    return HierarchicalVAE(enc if encoder is None else encoder, fams, dec if decoder is None else decoder, head, up, down, prior)


def build(
    cfg, x_shape: tuple[int, ...], encoder: nn.Module | None = None, decoder: nn.Module | None = None, *,
    columns: list[str] | None = None, classes: int | None = None, train_x: torch.Tensor | None = None,
) -> VAE | HierarchicalVAE | ConditionalVAE:  # fmt: skip
    """A VAE from a resolved config, its networks started as ``model.init`` says and, given the
    training images ``train_x`` (N, *x_shape), its decoder's output bias as ``model.output_bias``
    says (``reparam.model.init``; without them the bias stays as drawn; an ``encoder`` or
    ``decoder`` passed in is left as it is). See ``assemble`` for the rest."""
    model = assemble(cfg, x_shape, encoder, decoder, columns=columns, classes=classes)
    initialize(model, cfg.model.init, keep=[m for m in (encoder, decoder) if m is not None])
    if train_x is not None and decoder is None:
        output_bias(model, train_x, cfg.model.output_bias)
    return model


def assemble(
    cfg, x_shape: tuple[int, ...], encoder: nn.Module | None = None, decoder: nn.Module | None = None, *,
    columns: list[str] | None = None, classes: int | None = None,
) -> VAE | HierarchicalVAE | ConditionalVAE:  # fmt: skip
    """A VAE from a resolved config (``reparam.config.Config``) and the data's image shape (channels-last).

    ``model.arch`` picks the networks; ``encoder`` or ``decoder`` replaces the configured
    one with any module honouring the contract: encoder x (*batch, *x_shape) ->
    (*batch, raw_size) (the family's raw numbers, then the flow's), decoder z (*batch, D)
    -> (*batch, head.raw_size). ``latent.flow`` adds a flow to the posterior and
    ``prior.name`` chooses p(z); ``model.stochastic`` stacks further stochastic layers
    (a ``HierarchicalVAE``). ``columns``: a table's column kinds (``Data.columns.layout()``),
    for the table head. ``model.condition=label`` builds a ``ConditionalVAE`` of ``classes``
    classes (its decoder reads D + C numbers), with a classifier q(y|x) (the encoder's
    architecture, C outputs) when ``data.labeled`` asks for semi-supervised training.
    """
    if cfg.model.stochastic:
        return build_hierarchical(cfg, x_shape, encoder, decoder, columns)
    family = latents.get(cfg.latent.family, cfg.latent.dim, **cfg.latent.options)
    head = likelihoods.get(cfg.likelihood.name, x_shape, columns, **cfg.likelihood.options)
    flow = None if cfg.latent.flow == "none" else flows.get(cfg.latent.flow, family.dim, cfg.latent.flow_steps)
    conditional = cfg.model.condition == "label"
    if conditional and not classes:
        raise ConfigError("model.condition=label needs labelled data: digits, MNIST, an .npz with y, or a folder of class subfolders")
    extra = classes if conditional and classes else 0  # the decoder also reads the one-hot label (classes checked above)
    prior = priors.get(cfg.prior.name, family, x_shape, extra if cfg.prior.name == "label" else cfg.prior.components)
    raw_size = family.raw_size + (0 if flow is None else flow.raw_size)
    arch = ARCHS.lookup(cfg.model.arch)
    if encoder is None or decoder is None:
        enc, dec = arch(cfg.model, tuple(x_shape), raw_size, family.dim + extra, head.raw_size)
        encoder = enc if encoder is None else encoder
        decoder = dec if decoder is None else decoder
    if not conditional:
        return VAE(encoder, family, decoder, head, prior, flow)
    assert classes  # a conditional model: checked above
    classifier = arch(cfg.model, tuple(x_shape), classes, 1, head.raw_size)[0] if cfg.data.labeled else None  # its encoder half
    return ConditionalVAE(encoder, family, decoder, head, classes, classifier, prior, flow)
