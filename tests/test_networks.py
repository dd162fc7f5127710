"""Architectures: the shape contract with a sample dimension, gradients, layout, user networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reparam import latents, likelihoods, model, objectives
from reparam.errors import ConfigError
from reparam.networks import ARCHS, ConvDecoder, ConvEncoder
from tests.conftest import tiny_config

K, B, D = 3, 4, 5
# (arch, x_shape, likelihood): grey and colour, 28x28 and 32x32, and the bundled digits' 8x8.
CASES = [
    ("mlp", (8, 8), "bernoulli"),
    ("mlp", (6, 6, 3), "gaussian"),
    ("conv", (8, 8), "bernoulli"),
    ("conv", (28, 28), "continuous_bernoulli"),
    ("conv", (32, 32, 3), "gaussian"),
    ("conv", (32, 32, 3), "discretized_logistic"),
    ("conv", (28, 28, 2), "discretized_logistic"),
]


def vae_for(arch: str, x_shape, head: str) -> model.VAE:
    cfg = tiny_config(f"model.arch={arch}", f"latent.dim={D}", f"likelihood.name={head}", "model.channels=[4,8]")
    return model.build(cfg, x_shape)


def images(x_shape, n=B) -> torch.Tensor:
    return torch.randint(0, 256, (n, *x_shape)) / 255.0


@pytest.mark.parametrize("arch,x_shape,head", CASES)
def test_shapes_with_a_sample_dimension(arch, x_shape, head):
    vae = vae_for(arch, x_shape, head)
    x = images(x_shape)
    q = vae.posterior(x)
    assert q.batch_shape == (B,) and q.event_shape == (D,)
    z = q.rsample((K,))  # (K, B, D)
    px = vae.likelihood(z)
    assert px.batch_shape == (K, B) and px.event_shape == x_shape
    assert px.log_prob(x).shape == (K, B) and torch.isfinite(px.log_prob(x)).all()
    assert vae.decode_mean(z).shape == (K, B, *x_shape)
    # the leading K is only flattened into the batch: each z decodes as it would alone
    torch.testing.assert_close(vae.decoder(z)[1], vae.decoder(z[1]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch,x_shape,head", CASES[::2])
def test_every_parameter_gets_a_gradient(arch, x_shape, head):
    vae = vae_for(arch, x_shape, head)
    bound, _ = objectives.elbo(vae, images(x_shape))
    (-bound.mean()).backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_conv_encoder_reads_channels_last_images():
    """x (N, H, W, C): the encoder must see channel c of pixel (i, j) as x[n, i, j, c]."""
    enc = ConvEncoder((8, 8, 3), [4], [], 2, "relu")
    x = torch.rand(2, 8, 8, 3)
    first = enc.convs[0]
    by_hand = nn.functional.conv2d(x.permute(0, 3, 1, 2).contiguous(), first.weight, first.bias, stride=2, padding=1)
    torch.testing.assert_close(first(x.permute(0, 3, 1, 2)), by_hand)
    torch.testing.assert_close(enc(x), enc(x.clone()))  # no hidden dependence on memory layout


def test_conv_decoder_writes_channels_last_pixels():
    """raw is the channels-last flattening of the (P, H, W) map of the last convolution."""
    dec = ConvDecoder(2, (8, 8, 3), [4], [], 8 * 8 * 3, "relu")
    z = torch.randn(5, 2)
    maps = dec.out(dec.deconvs(dec.dense(z).view(-1, *dec.top)))  # (5, 3, 8, 8)
    torch.testing.assert_close(dec(z).unflatten(-1, (8, 8, 3)), maps.permute(0, 2, 3, 1))


@pytest.mark.parametrize("x_shape,needle", [((10, 10), "divisible by 4"), ((64,), "needs images"), ((4, 4, 4, 4), "needs images")])
def test_conv_rejects_shapes_it_cannot_take(x_shape, needle):
    with pytest.raises(ConfigError, match=needle):
        vae_for("conv", x_shape, "gaussian")


def test_archs_are_registered():
    assert set(ARCHS.names()) >= {"mlp", "conv"}
    with pytest.raises(ConfigError, match="one of conv, mlp"):
        tiny_config("model.arch=resnet9000")


class TinyEncoder(nn.Module):
    """A user network: x (*batch, 8, 8) -> (*batch, out)."""

    def __init__(self, out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(-2), nn.Linear(64, 16), nn.GELU(), nn.Linear(16, out))

    def forward(self, x):
        return self.net(x)


def test_user_networks_through_build_and_the_constructor(tmp_path):
    """The README's example: bring your own encoder and decoder, keep family, head and trainer."""
    from reparam.train import train

    cfg = tiny_config("latent.dim=3", "train.epochs=1", "train.report=true")
    family = latents.get("gaussian", 3)
    head = likelihoods.get("bernoulli", (8, 8))
    decoder = nn.Sequential(nn.Linear(3, 32), nn.GELU(), nn.Linear(32, head.raw_size))
    by_hand = model.VAE(TinyEncoder(family.raw_size), family, decoder, head)
    built = model.build(cfg, (8, 8), encoder=TinyEncoder(family.raw_size))
    assert isinstance(built.encoder, TinyEncoder) and not isinstance(built.decoder, nn.Sequential)
    with pytest.warns(UserWarning, match="report skipped"):  # config.json cannot rebuild user networks
        run = train(cfg, tmp_path / "run", model=by_hand)
    assert (run / "summary.json").is_file() and by_hand.decoder is decoder
    assert torch.isfinite(by_hand.posterior(torch.rand(2, 8, 8)).mean).all()
