"""Architectures. Encoders emit raw tensors only; families and heads give them meaning."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown model.activation {name!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]


def mlp(sizes: Sequence[int], act: str) -> nn.Sequential:
    """Linear layers between consecutive ``sizes``, ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation(act)())
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """x (*batch, *x_shape) -> raw (*batch, out): the parameters of q(z|x), unconstrained."""

    def __init__(self, x_shape: Sequence[int], hidden: Sequence[int], out: int, act: str = "tanh"):
        super().__init__()
        self.x_ndim = len(x_shape)
        self.net = mlp([math.prod(x_shape), *hidden, out], act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(-self.x_ndim))


class Decoder(nn.Module):
    """z (*batch, D) -> raw (*batch, out): the parameters of p(x|z), unconstrained."""

    def __init__(self, dim: int, hidden: Sequence[int], out: int, act: str = "tanh"):
        super().__init__()
        self.net = mlp([dim, *hidden, out], act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
