"""A table run's pictures: per-column reconstructions, per-column marginals of the data
against the model's samples, the latent scatter; and decoded samples written as CSV.

Rows are coded (``reparam.tables.Columns``); every figure shows them in original units
(real columns x * std + mean, categories by their labels).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ..files import atomic_write_bytes
from ..tables import Columns, format_value
from . import latent

MAX_COLUMNS = 40  # panels per figure
PANEL = (2.3, 2.0)  # inches
NCOLS = 5
MAX_POINTS = 2000


@torch.inference_mode()
def sample_rows(model, n: int, seed: int = 0) -> torch.Tensor:
    """n coded rows drawn from the model: z ~ p(z), then x ~ p(x|z) (seeded; the caller's RNG
    state is kept). (n, F')."""
    with latent.seeded(seed):
        z = model.family.sample_prior(n, 1.0)  # (n, D)
        return model.likelihood(z).sample()


def csv_bytes(columns: Columns, x: torch.Tensor) -> bytes:
    """Coded rows (N, F') as CSV text in original units, with a header of column names."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns.names)
    for row in columns.decode(x.detach().cpu().double().numpy()):
        writer.writerow([format_value(v) for v in row])
    return buf.getvalue().encode()


def save_samples_csv(model, columns: Columns, path: Path, n: int = 64, seed: int = 0) -> Path:
    """n rows drawn from the model, decoded to original units and labels, written atomically as CSV."""
    atomic_write_bytes(path, csv_bytes(columns, sample_rows(model, n, seed)))
    return Path(path)


def _grid(n: int, title: str) -> tuple[Figure, list]:
    """A figure of n small panels, NCOLS to a row, under one title."""
    ncols = min(NCOLS, n)
    nrows = math.ceil(n / ncols)
    height = PANEL[1] * nrows + 0.6
    fig = Figure(figsize=(PANEL[0] * ncols, height))  # fixed spacing: constrained layout costs seconds at 30 panels
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.5 / height, top=1 - 0.9 / height, wspace=0.45, hspace=0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title, y=1 - 0.12 / height)
    return fig, list(axes[:n])


def _shown(columns: Columns, what: str) -> tuple[list, str]:
    """The columns drawn (at most MAX_COLUMNS) and a title that says so when some are left out."""
    cols = columns.columns[:MAX_COLUMNS]
    left = len(columns.columns) - len(cols)
    return cols, what + (f"; the first {len(cols)} of {len(columns.columns)} columns" if left else "")


def _decoded(columns: Columns, x: torch.Tensor) -> list[list]:
    """Coded rows (N, F') -> one list of N original values per column."""
    rows = columns.decode(x.detach().cpu().double().numpy())
    return [list(col) for col in zip(*rows)] if rows else [[] for _ in columns.columns]


@torch.inference_mode()
def reconstructions(model, x: torch.Tensor) -> torch.Tensor:
    """The mean of p(x|z) at the family's representative latent of q(z|x): (N, F')."""
    return model.decode_mean(latent.points(model, x))


def columns_figure(model, columns: Columns, x: torch.Tensor) -> Figure:
    """One panel per column: real columns as reconstruction against input (R^2 in the title),
    binary and categorical ones as a confusion matrix (accuracy in the title)."""
    x = x[:MAX_POINTS]
    shown, title = _shown(columns, f"test rows and their reconstructions ({len(x)} rows)")
    truth, recon = _decoded(columns, x), _decoded(columns, reconstructions(model, x))
    fig, axes = _grid(len(shown), title)
    for ax, col, col_truth, col_recon in zip(axes, shown, truth, recon):
        if col.kind == "real":
            a, b = np.asarray(col_truth), np.asarray(col_recon)
            r2 = 1 - float(((a - b) ** 2).sum()) / max(float(((a - a.mean()) ** 2).sum()), 1e-300)
            ax.scatter(a, b, s=5, alpha=0.6)
            lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
            ax.plot([lo, hi], [lo, hi], color="C7", lw=0.8)
            ax.set_title(f"{col.name}\nR² = {r2:.2f}", fontsize=8)
            ax.set_xlabel("input", fontsize=7)
            ax.set_ylabel("reconstruction", fontsize=7)
        else:
            _confusion(ax, col, col_truth, col_recon)
        ax.tick_params(labelsize=6)
    return fig


def _confusion(ax, col, truth: list, recon: list) -> None:
    index = {format_value(v): i for i, v in enumerate(col.labels)}
    m = np.zeros((len(col.labels), len(col.labels)))
    for a, b in zip(truth, recon):
        m[index[format_value(a)], index[format_value(b)]] += 1
    ax.imshow(m, cmap="Blues")
    names = [format_value(v)[:10] for v in col.labels]
    ax.set_xticks(range(len(names)), names, rotation=60, fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.set_title(f"{col.name}\naccuracy {np.trace(m) / max(m.sum(), 1):.2f}", fontsize=8)
    ax.set_xlabel("reconstruction", fontsize=7)
    ax.set_ylabel("input", fontsize=7)


def marginals_figure(model, columns: Columns, x: torch.Tensor, seed: int = 0) -> Figure:
    """One panel per column: the test rows' distribution against as many rows drawn from the model."""
    x = x[:MAX_POINTS]
    shown, title = _shown(columns, "test rows (blue) and rows sampled from the model (orange)")
    truth, drawn = _decoded(columns, x), _decoded(columns, sample_rows(model, max(len(x), 200), seed))
    fig, axes = _grid(len(shown), title)
    for ax, col, a, b in zip(axes, shown, truth, drawn):
        if col.kind == "real":
            bins = np.histogram_bin_edges(np.concatenate([a, b]), bins=20)
            ax.hist(a, bins=bins, density=True, alpha=0.55, color="C0")
            ax.hist(b, bins=bins, density=True, alpha=0.55, color="C1")
        else:
            names = [format_value(v) for v in col.labels]
            for i, (values, colour) in enumerate(((a, "C0"), (b, "C1"))):
                text = [format_value(v) for v in values]
                share = [text.count(n) / max(len(text), 1) for n in names]
                ax.bar(np.arange(len(names)) + (i - 0.5) * 0.4, share, width=0.4, color=colour)
            ax.set_xticks(range(len(names)), [n[:10] for n in names], rotation=60, fontsize=6)
        ax.set_title(col.name, fontsize=8)
        ax.tick_params(labelsize=6)
    return fig


def codes_figure(model, columns: Columns, x: torch.Tensor) -> Figure:
    """Test rows' latents (PCA to 2-D when D > 2), coloured by the last binary or categorical
    column where the table has one."""
    x = x[:MAX_POINTS]
    points, (xlabel, ylabel) = latent.project_2d(latent.points(model, x))
    xy = points.numpy()
    fig = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = fig.add_subplot()
    discrete = [j for j, c in enumerate(columns.columns) if c.kind != "real"]
    if not discrete:
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.7, color="C0")
    else:
        j = discrete[-1]
        values = [format_value(v) for v in _decoded(columns, x)[j]]
        for i, label in enumerate(format_value(v) for v in columns.columns[j].labels):
            pick = np.array([v == label for v in values])
            if pick.any():
                ax.scatter(xy[pick, 0], xy[pick, 1], s=8, alpha=0.7, color=f"C{i % 10}", label=label)
        ax.legend(title=columns.columns[j].name, fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{len(xy)} test rows")
    return fig

