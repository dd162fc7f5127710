"""Architectures. Encoders emit raw tensors only; families and heads give them meaning.

Image layout, once for the whole package: images are stored channels-last, (N, H, W) for
grey and (N, H, W, C) for colour, so ``x_shape`` is (H, W) or (H, W, C). Convolutions see
the same memory as (N, C, H, W) through a permute (which is torch's channels_last format,
no copy). A decoder's raw output is the channels-last flattening of a per-pixel parameter
map (H, W, P): likelihood heads read it back with ``raw.unflatten(-1, (H, W, P))``.

Architectures are registered by name (``model.arch``): a builder takes the model config,
``x_shape``, the family's raw size, the latent dimension and the head's raw size, and
returns (encoder, decoder).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .errors import ConfigError, one_of, require
from .registry import Registry

ACTIVATIONS: Registry = Registry("model.activation")
for _name, _cls in {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU, "softplus": nn.Softplus, "leaky_relu": nn.LeakyReLU}.items():
    ACTIVATIONS[_name] = _cls


def activation(name: str) -> type[nn.Module]:
    """The activation module class registered as ``name`` (ConfigError naming the valid ones)."""
    return ACTIVATIONS.lookup(name)


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


ARCHS: Registry = Registry("model.arch")
INITS = ("auto", "he", "torch")  # how the dense layers start: reparam.model.init
OUTPUT_BIASES = ("auto", "data", "init")  # how the decoder's output bias starts: reparam.model.init.output_bias


def check(cfg) -> None:
    """The ``model`` config section's rules (ConfigError, one line naming the key)."""
    one_of("model.arch", cfg.arch, tuple(ARCHS.names()))
    one_of("model.init", cfg.init, INITS)
    one_of("model.output_bias", cfg.output_bias, OUTPUT_BIASES)
    ACTIVATIONS.lookup(cfg.activation)
    require(all(h > 0 for h in cfg.hidden), f"model.hidden sizes must be positive, got {cfg.hidden}")
    require(len(cfg.channels) >= 1 and all(c > 0 for c in cfg.channels), f"model.channels must be positive sizes, got {cfg.channels}")
    require(all(d > 0 for d in cfg.stochastic), f"model.stochastic sizes must be positive, got {cfg.stochastic}")
    require(all(h > 0 for h in cfg.stochastic_hidden), f"model.stochastic_hidden sizes must be positive, got {cfg.stochastic_hidden}")
    require(not cfg.stochastic_hidden or bool(cfg.stochastic), "model.stochastic_hidden applies between stochastic layers: set model.stochastic too")


@ARCHS.register("mlp")
def build_mlp(cfg, x_shape: tuple[int, ...], enc_out: int, dim: int, dec_out: int) -> tuple[nn.Module, nn.Module]:
    """Dense encoder and mirrored decoder over flattened images."""
    return Encoder(x_shape, cfg.hidden, enc_out, cfg.activation), Decoder(dim, list(reversed(cfg.hidden)), dec_out, cfg.activation)


@ARCHS.register("conv")
def build_conv(cfg, x_shape: tuple[int, ...], enc_out: int, dim: int, dec_out: int) -> tuple[nn.Module, nn.Module]:
    """DCGAN-style strided convolutions (Radford et al. 2016), GroupNorm in place of batch norm."""
    enc = ConvEncoder(x_shape, cfg.channels, cfg.hidden, enc_out, cfg.activation)
    dec = ConvDecoder(dim, x_shape, cfg.channels, cfg.hidden, dec_out, cfg.activation)
    return enc, dec


def norm(channels: int) -> nn.GroupNorm:
    """GroupNorm (Wu & He 2018): normalizes each example on its own, so a step does not depend
    on how a batch is split across processes (BatchNorm would), and small batches are fine."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


def image_layout(x_shape: Sequence[int], levels: int) -> tuple[int, int, int]:
    """(H, W, C) of a channels-last image shape; ConfigError if convolutions cannot take it."""
    if len(x_shape) not in (2, 3):
        raise ConfigError(f"model.arch=conv needs images (H, W) or (H, W, C); the data has shape {tuple(x_shape)}")
    h, w = x_shape[:2]
    c = x_shape[2] if len(x_shape) == 3 else 1
    step = 2**levels
    if h % step or w % step:
        raise ConfigError(
            f"model.arch=conv with {levels} stride-2 layers needs H and W divisible by {step}; images are {h}x{w} "
            "(shorten model.channels)"
        )
    return h, w, c


class ConvEncoder(nn.Module):
    """x (*batch, H, W[, C]) -> raw (*batch, out).

    One 4x4 stride-2 convolution per entry of ``channels`` (each halves H and W; GroupNorm
    after all but the first, as DCGAN leaves the input layer unnormalized), then dense layers ``hidden`` to ``out``. 28x28 -> 14 -> 7; 32x32 -> 16 -> 8.
    """

    #: ``model.init=auto`` keeps torch's start for a conv model: with He's start in its dense layers
    #: the 32x32 coloured-shapes VAE of tests/train/test_scale.py reconstructed worse after 12
    #: epochs (MSE 0.033 against 0.028, 0.3 of the mean image's), and no measurement asked for it
    auto_init = "torch"

    def __init__(self, x_shape, channels: Sequence[int], hidden: Sequence[int], out: int, act: str = "relu"):
        super().__init__()
        self.x_ndim = len(x_shape)
        self.h, self.w, self.c = image_layout(x_shape, len(channels))
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip([self.c, *channels[:-1]], channels)):
            conv = nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not i)  # a bias before a norm is void
            layers += [conv, *([norm(c_out)] if i else []), activation(act)()]
        self.convs = nn.Sequential(*layers)
        flat = channels[-1] * (self.h >> len(channels)) * (self.w >> len(channels))
        self.dense = mlp([flat, *hidden, out], act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[: x.ndim - self.x_ndim]
        if self.c == 1:  # grey: (H, W) and (1, H, W) are the same memory
            h = x.reshape(-1, 1, self.h, self.w)
        else:  # (N, C, H, W) view of channels-last memory: torch's channels_last format, no copy
            h = x.reshape(-1, self.h, self.w, self.c).permute(0, 3, 1, 2)
        return self.dense(self.convs(h).flatten(1)).reshape(*batch, -1)


class ConvDecoder(nn.Module):
    """z (*batch, D) -> raw (*batch, H * W * P), the channels-last flattening of (H, W, P).

    Dense layers to a (channels[-1], H / 2^L, W / 2^L) map, one 4x4 stride-2 transposed
    convolution (with GroupNorm) per entry of ``channels`` (reversed), then a 3x3 convolution to the P =
    out / (H W) parameters per pixel. Leading dims of z (e.g. samples K) are flattened
    into the batch and restored after.
    """

    def __init__(self, dim: int, x_shape, channels: Sequence[int], hidden: Sequence[int], out: int, act: str = "relu"):
        super().__init__()
        self.h, self.w, _ = image_layout(x_shape, len(channels))
        if out % (self.h * self.w):
            raise ConfigError(f"a conv decoder emits whole pixels, but the likelihood wants {out} numbers for {self.h}x{self.w}")
        rev = list(reversed(channels))
        self.top = (rev[0], self.h >> len(channels), self.w >> len(channels))
        self.dense = nn.Sequential(mlp([dim, *reversed(hidden), math.prod(self.top)], act), activation(act)())
        layers: list[nn.Module] = []
        for c_in, c_out in zip(rev, [*rev[1:], rev[-1]]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False), norm(c_out), activation(act)()]
        self.deconvs = nn.Sequential(*layers)
        self.out = nn.Conv2d(rev[-1], out // (self.h * self.w), 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).view(-1, *self.top)
        h = self.out(self.deconvs(h))  # (N, P, H, W)
        return h.permute(0, 2, 3, 1).reshape(*batch, -1)
