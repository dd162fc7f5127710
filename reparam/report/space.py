"""Figures of the latent space itself: traversals, interpolations, manifold, codes by label."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from . import figures, latent, table
from .run import RunView

MAX_TRAVERSED = 8  # dimensions shown in the traversal figure
STEPS = 9  # images per traversal row
MAX_POINTS = 2000  # codes drawn in the scatter


def traversals_figure(model, x: torch.Tensor, ranking: latent.Ranking) -> Figure:
    """The most informative dimensions swept around the latent of the first test image."""
    dims = ranking.order[:MAX_TRAVERSED].tolist()
    point = latent.points(model, x[:1])[0]  # (D,)
    grid = latent.traversals(model, point, dims, STEPS)  # (len(dims), STEPS, *x_shape)
    labels = [f"z{d} ({ranking.scores[d]:.2f})" for d in dims]
    return figures.image_rows(list(grid), labels, f"traversals; row label: dimension ({ranking.what})")


def interpolations_figure(model, x: torch.Tensor, labels: torch.Tensor | None, steps: int = 8) -> Figure:
    """Each kind of path the family offers, between two test images shown at both ends."""
    i, j = latent.distinct_pair(labels, len(x))
    a, b = latent.points(model, x[[i, j]])  # (D,) each
    t = torch.linspace(0.0, 1.0, steps)
    rows, names = [], []
    for kind in model.family.interpolation_kinds():
        path = latent.interpolation(model, a, b, t, kind)  # (steps, *x_shape)
        rows.append(torch.cat([x[i : i + 1], path, x[j : j + 1]]))
        names.append(kind)
    return figures.image_rows(rows, names, "input | decoded path | input")


def manifold_figure(model, x: torch.Tensor, steps: int = 15) -> Figure | None:
    """The decoded grid of a two-dimensional latent space; None for other dimensions."""
    grid = latent.manifold(model, x, steps)  # (steps, steps, *x_shape)
    if grid is None:
        return None
    fig = figures.image_rows(list(grid), [""] * steps, "decoded means over the latent grid")
    fig.axes[0].set_yticks([])
    fig.axes[0].set_xlabel("z0 increases to the right, z1 upwards")
    return fig


def codes_figure(model, x: torch.Tensor, labels: torch.Tensor | None) -> Figure:
    """Scatter of test-set latents (PCA to 2-D when D > 2), coloured by label where known."""
    points, (xlabel, ylabel) = latent.project_2d(latent.points(model, x[:MAX_POINTS]))
    xy = points.numpy()
    fig = Figure(figsize=(5.2, 4.4), layout="constrained")
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6, color="C0")
    else:
        lab = labels[:MAX_POINTS].numpy()
        art = ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.7, c=lab, cmap="tab10", vmin=-0.5, vmax=9.5)
        fig.colorbar(art, ax=ax, ticks=np.unique(lab), label="label")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{len(xy)} test images")
    return fig


def render(view: RunView, seed: int = 0, progress: bool | None = False) -> dict[str, bytes]:
    """Every figure that applies to the run, as PNG bytes keyed by the stems of FIGURES.

    ``progress``: a bar over the figures (None: only on a terminal)."""
    pngs = {}
    with torch.inference_mode():
        plans = _figures(view, seed)
        bar = tqdm(plans.items(), total=len(plans), disable=None if progress is None else not progress, desc="report", unit="figure", leave=False)
        for name, draw in bar:
            fig = draw()
            if fig is not None:
                pngs[name] = figures.png(fig)
    return pngs


def _figures(view: RunView, seed: int) -> dict[str, Callable[[], Figure | None]]:
    """What draws each figure, in order. Image runs get image grids; a table run
    (``view.columns``) gets its table figures instead.

    A conditional run's figures are those of the model given class ``view.label`` (its
    test images only), beside draws of every class and the codes of all test images
    (q(z|x, y) at their labels)."""
    if view.conditional:
        return _class_figures(view, seed)
    model, x = view.model, view.test
    ranking = latent.rank_dimensions(model, x)
    common = {"curves": lambda: figures.curves_figure([(view.name, view.metrics)]), "kl_per_dim": lambda: figures.kl_figure(ranking)}
    if view.columns is not None:
        c = view.columns
        return {**common, "columns": lambda: table.columns_figure(model, c, x), "marginals": lambda: table.marginals_figure(model, c, x, seed),
                "codes": lambda: table.codes_figure(model, c, x)}  # fmt: skip
    return {
        **common,
        "reconstructions": lambda: figures.reconstructions_figure(model, x),
        "samples": lambda: figures.samples_figure(model, seed),
        "traversals": lambda: traversals_figure(model, x, ranking),
        "interpolations": lambda: interpolations_figure(model, x, view.labels),
        "manifold": lambda: manifold_figure(model, x),
        "codes": lambda: codes_figure(model, x, view.labels),
    }


def class_samples_figure(model, names: list[str], seed: int = 0, n: int = 10) -> Figure:
    """One row of decoded draws of p(z|y) per class y."""
    from .pictures import class_samples

    grid = class_samples(model, n, seed=seed).unflatten(0, (model.classes, n))
    return figures.image_rows(list(grid), names, "decoded samples, one row per class")


def _class_figures(view: RunView, seed: int) -> dict[str, Callable[[], Figure | None]]:
    given, (model, x, labels) = view.given(), view.of_class()
    names = view.model.class_names
    assert names is not None  # a conditional run has its classes
    ranking = latent.rank_dimensions(model, x)
    return {
        "curves": lambda: figures.curves_figure([(view.name, view.metrics)]),
        "kl_per_dim": lambda: figures.kl_figure(ranking),
        "class_samples": lambda: class_samples_figure(view.model, names, seed),
        "reconstructions": lambda: figures.reconstructions_figure(model, x),
        "samples": lambda: figures.samples_figure(model, seed),
        "traversals": lambda: traversals_figure(model, x, ranking),
        "interpolations": lambda: interpolations_figure(model, x, labels),
        "manifold": lambda: manifold_figure(model, x),
        "codes": lambda: codes_figure(given, view.test, view.labels),
    }
