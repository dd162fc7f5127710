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


def class_samples(model, per_class: int, temperature: float = 1.0, seed: int = 0, classes: list[int] | None = None) -> torch.Tensor:
    """A conditional model's decoded draws of p(z|y), ``per_class`` for each class in ``classes``
    (default: all), class after class: (len(classes) * per_class, *x_shape)."""
    classes = list(range(model.classes)) if classes is None else classes
    label = [torch.tensor(c, device=next(model.parameters()).device) for c in classes]
    draws = []
    for y in label:
        images = prior_samples(model.given(y), per_class, temperature, seed + int(y))
        assert images is not None  # None only for a family without tempered draws at temperature != 1; the views draw at 1
        draws.append(images)
    return torch.cat(draws)


def save_samples(model, path: Path, n: int = 64, seed: int = 0) -> Path:
    """n decoded prior draws (seeded; the caller's RNG state is left as it was); for a
    conditional model a grid with one row of draws per class."""
    if model.classes:
        return save_class_samples(model, path, seed=seed)
    images = prior_samples(model, n, 1.0, seed)  # (n, *x_shape)
    assert images is not None  # every family samples its prior at temperature 1
    return save_png(path, tile(images), upscale_for(model.x_shape))


def save_class_samples(model, path: Path, n: int | None = None, seed: int = 0, label: int | None = None) -> Path:
    """A conditional model's draws: n (default 64) of class ``label`` in a grid, or without a
    label one row of n (default 10) per class."""
    if label is None:
        n = n or 10
        return save_png(path, tile(class_samples(model, n, seed=seed), ncols=n), upscale_for(model.x_shape))
    images = class_samples(model, n or 64, seed=seed, classes=[label])
    return save_png(path, tile(images), upscale_for(model.x_shape))


def save_reconstructions(model, x: torch.Tensor, path: Path) -> Path:
    pairs = reconstructions(model, x[:32])
    return save_png(path, tile(pairs, ncols=max(1, len(x[:32]) // 2)), upscale_for(model.x_shape))


def save_run_pictures(model, run_dir: Path, x: torch.Tensor, seed: int = 0, columns=None, y: torch.Tensor | None = None) -> None:
    """What a finished run leaves beside its weights: samples.png and reconstructions.png, or
    for a table (``columns``, ``reparam.tables.Columns``) samples.csv in original units. A
    conditional model (test labels ``y``) reconstructs given the labels and samples per class."""
    if columns is not None:
        from .table import save_samples_csv

        save_samples_csv(model, columns, run_dir / "samples.csv", seed=seed)
        return
    save_samples(model, run_dir / "samples.png", seed=seed)
    save_reconstructions(model if y is None else model.given(y[:32]), x[:32], run_dir / "reconstructions.png")
