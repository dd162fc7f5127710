"""The run's pictures: prior samples and reconstructions, as plain PNG grids."""

from __future__ import annotations

from pathlib import Path

import torch

from ..evaluate.diagnostics import posterior_points
from .images import save_png, tile, upscale_for
from .latent import prior_samples


@torch.inference_mode()
def reconstructions(model, x: torch.Tensor) -> torch.Tensor:
    """Inputs and the mean of p(x|z) at the family's representative z of q(z|x), in pairs of rows."""
    recon = model.decode_mean(posterior_points(model, x))
    ncols = len(x) // 2
    rows = [x[:ncols], recon[:ncols], x[ncols : 2 * ncols], recon[ncols : 2 * ncols]]
    return torch.cat(rows)


def save_samples(model, path: Path, n: int = 64, seed: int = 0) -> Path:
    """n decoded prior draws (seeded; the caller's RNG state is left as it was)."""
    images = prior_samples(model, n, 1.0, seed)  # (n, *x_shape)
    assert images is not None  # every family samples its prior at temperature 1
    return save_png(path, tile(images), upscale_for(model.x_shape))


def save_reconstructions(model, x: torch.Tensor, path: Path) -> Path:
    pairs = reconstructions(model, x[:32])
    return save_png(path, tile(pairs, ncols=max(1, len(x[:32]) // 2)), upscale_for(model.x_shape))
