"""How a model's networks start (``model.init``): a measured choice, not torch's default by accident.

- ``torch``: every layer as torch builds it. ``nn.Linear`` draws W ~ U(-1/sqrt(n_in), 1/sqrt(n_in)),
  a standard deviation of 1/sqrt(3 n_in): a tanh network's outputs then barely depend on x, and a
  prior that can follow the posterior (VampPrior, the learned p(z_l|z_(l+1)) of a hierarchy)
  settles where the code is ignored (test KL 0.02 nats after one MNIST epoch; the VampPrior then
  trailed the standard prior by 14 nats). Runs written
  before ``model.init`` existed started this way, and read back as ``torch``.
- ``he``: every dense weight of the networks W ~ N(0, 2 / n_in) (He et al. 2015), what the
  VampPrior authors' code does (Tomczak & Welling 2018); biases as torch draws them.
- ``auto`` (the default): what each kind of model measured best with, its ``auto_init``. ``he``
  for the VAE, the hierarchy and the IAF, whose context rows of the encoder's output keep
  torch's smaller start (its MADEs start at the identity themselves). ``torch`` for planar
  flows, whose every parameter is an encoder output (with ``he`` planar-4 scored worse than no
  flow on MNIST), and for the conditional VAE and M2 (with ``he`` M2's classifier on the
  bundled digits, 100 labels, 5 epochs, ended at 73% test error against 28%), and for the
  conv architecture (its encoder's ``auto_init``: with ``he`` a conv VAE of coloured shapes
  reconstructed worse).

The decoder's output bias (``model.output_bias``): ``data`` starts it where p(x|z) has the
training data's mean image (for a Bernoulli likelihood, the logits of the mean pixel, clipped
to [1e-3, 1 - 1e-3]), as Burda et al.'s code does, so that the decoder does not spend its first
steps learning the mean through the latent; ``init`` leaves it as ``model.init`` drew it;
``auto`` asks the model (``auto_output_bias``: ``data`` for a hierarchy, whose upper layer
otherwise collapsed, ``init`` elsewhere, which is what every other model's table in
BENCHMARKS.md was measured with). Heads whose raw numbers do not follow from the mean alone,
and decoders whose last layer is not a dense one emitting them, keep their bias.

A flow's and a prior's own parameters are theirs to start (``reparam.flows``, ``reparam.priors``);
only the networks (encoder, decoder, the layers between stochastic layers, a classifier) change.
Convolutions keep torch's default under every choice. The MNIST numbers beside each choice are
in BENCHMARKS.md ("priors", "flows", "layers"; ``benchmarks/models.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..data.storage import unit
from ..flows import Flow
from ..priors import Prior
from .hierarchical import HierarchicalVAE
from .vae import VAE


def dense_layers(module: nn.Module, keep: Sequence[nn.Module] = ()) -> list[nn.Linear]:
    """The nn.Linear layers of ``module``, outside any flow or prior it holds and outside ``keep``."""
    out: list[nn.Linear] = []
    for child in module.children():
        if isinstance(child, (Flow, Prior)) or any(child is k for k in keep):
            continue
        if isinstance(child, nn.Linear):
            out.append(child)
        out += dense_layers(child, keep)
    return out


def output_layer(network: nn.Module, raw_size: int) -> nn.Linear | None:
    """A network's last dense layer when it emits the ``raw_size`` numbers, else None."""
    layers = [m for m in network.modules() if isinstance(m, nn.Linear)]
    return layers[-1] if layers and layers[-1].out_features == raw_size else None


@torch.no_grad()
def he_(layer: nn.Linear) -> None:
    """W ~ N(0, 2 / n_in) in place (He et al. 2015, fan-in mode)."""
    layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_features))


@torch.no_grad()
def initialize(model: VAE | HierarchicalVAE, how: str, keep: Sequence[nn.Module] = ()) -> None:
    """Start ``model``'s networks as ``how`` says (one of ``networks.INITS``), in place.

    Modules in ``keep`` (networks a caller built and passed in) are left as they are. Layers
    are drawn in module order from the global generator, so a seed fixes them.
    """
    auto = how == "auto"
    if (model.auto_init if auto else how) == "torch":
        return
    flow_rows, head, base = None, None, 0
    if auto and model.flow is not None and not any(model.encoder is k for k in keep):  # the flow's rows keep torch's start
        head = output_layer(model.encoder, model.raw_size)
        base = model.raw_size - model.flow.raw_size
        flow_rows = None if head is None else head.weight[base:].clone()
    for layer in dense_layers(model, keep):
        he_(layer)
    if flow_rows is not None and head is not None:
        head.weight[base:] = flow_rows


@torch.no_grad()
def output_bias(model, x: torch.Tensor, how: str) -> bool:
    """Start the decoder's output bias as ``how`` says (``init``, ``data`` or ``auto``; see above)
    from the training images x (N, *x_shape); whether it was set."""
    if (model.auto_output_bias if how == "auto" else how) != "data":
        return False
    raw = model.head.raw_for_mean(unit(x).mean(0))
    layer = output_layer(model.decoder, model.head.raw_size)
    if raw is None or layer is None or layer.bias is None:
        return False
    layer.bias.copy_(raw)
    return True
