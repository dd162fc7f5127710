"""The run's pictures: prior samples and reconstructions, as plain PNG grids (a table: samples.csv)."""

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
    return save_png(path, tile(images), upscale_for(model.x_shape))


def save_reconstructions(model, x: torch.Tensor, path: Path) -> Path:
    pairs = reconstructions(model, x[:32])
    return save_png(path, tile(pairs, ncols=max(1, len(x[:32]) // 2)), upscale_for(model.x_shape))


def save_run_pictures(model, run_dir: Path, x: torch.Tensor, seed: int = 0, columns=None) -> None:
    """What a finished run leaves beside its weights: samples.png and reconstructions.png, or
    for a table (``columns``, ``reparam.tables.Columns``) samples.csv in original units."""
    if columns is not None:
        from .table import save_samples_csv

        save_samples_csv(model, columns, run_dir / "samples.csv", seed=seed)
        return
    save_samples(model, run_dir / "samples.png", seed=seed)
    save_reconstructions(model, x, run_dir / "reconstructions.png")
