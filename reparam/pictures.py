"""The run's pictures: prior samples and reconstructions."""

from __future__ import annotations

from pathlib import Path

import torch

from .images import save_png, tile, upscale_for


@torch.inference_mode()
def prior_samples(model, n: int, generator_seed: int | None = None) -> torch.Tensor:
    """Mean images of p(x|z) for n draws z ~ p(z): (n, *x_shape)."""
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    z = model.prior().sample((n,))  # (n, D); pictures need no gradient
    return model.decode_mean(z)


@torch.inference_mode()
def reconstructions(model, x: torch.Tensor) -> torch.Tensor:
    """Inputs and the mean of p(x|z) at the family's representative z of q(z|x), in pairs of rows."""
    q = model.posterior(x)
    recon = model.decode_mean(model.family.point(q))
    ncols = len(x) // 2
    rows = [x[:ncols], recon[:ncols], x[ncols : 2 * ncols], recon[ncols : 2 * ncols]]
    return torch.cat(rows)


def save_samples(model, path: Path, n: int = 64, seed: int | None = 0) -> Path:
    images = prior_samples(model, n, seed)
    return save_png(path, tile(images), upscale_for(model.x_shape))


def save_reconstructions(model, x: torch.Tensor, path: Path) -> Path:
    pairs = reconstructions(model, x[:32])
    return save_png(path, tile(pairs, ncols=max(1, len(x[:32]) // 2)), upscale_for(model.x_shape))
