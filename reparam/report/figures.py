"""The report's figures, drawn with matplotlib's object API (Agg, no pyplot global state).

Every ``*_figure`` function returns a ``matplotlib.figure.Figure`` (or None when the figure
does not apply to the run); ``png`` turns one into PNG bytes.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import latent
from .images import tile

#: file stem -> (title, caption), in the order the report shows them.
FIGURES: dict[str, tuple[str, str]] = {
    "curves": ("Training curves", "Per-epoch averages: solid lines are the test set, dashed the training set."),
    "kl_per_dim": ("KL per latent dimension", "Mean KL(q(z_d|x) || p(z_d)) over the test set, sorted; filled bars are active units."),
    "class_samples": ("Samples per class", "A conditional model's decoded draws z ~ p(z|y), x = mean of p(x|z, y), one row per class y."),
    "reconstructions": ("Reconstructions", "Test images and the decoder's mean at the family's representative latent of q(z|x)."),
    "samples": ("Prior samples", "Decoded draws z ~ p(z), one row per temperature."),
    "traversals": ("Latent traversals", "One test image's latent, one informative dimension swept per row (most informative first)."),
    "interpolations": ("Interpolations", "Between two test images (outer columns), one row per path through latent space."),
    "manifold": ("Decoded manifold", "The decoder's mean over a grid of the two-dimensional latent space."),
    "columns": ("Per-column reconstructions", "A table's test rows against the mean of p(x|z) at their representative latents, in original units: real columns as points against the diagonal, the others as confusion matrices."),
    "marginals": ("Per-column marginals", "Each column's distribution in the test rows and in as many rows drawn from the model (z ~ p(z), x ~ p(x|z))."),
    "codes": ("Latent codes", "Representative latents of the test set, coloured by label (a table: by its last binary or categorical column)."),
}

CELL = 0.55  # inches per image in a grid
TERM_TITLES = {"elbo": "bound (ELBO, nats)", "log_px_z": "reconstruction E log p(x|z)", "kl": "KL(q(z|x) || p(z))"}


def png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a Figure to PNG bytes with the Agg canvas; a figure without a layout engine is cropped
    to its contents ("tight", which draws it twice), one with constrained layout already fits its size."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=None if fig.get_layout_engine() is not None else "tight")
    return buf.getvalue()


def image_rows(rows: list[torch.Tensor], labels: list[str], title: str) -> Figure:
    """A grid of images, one row per tensor (n_i, *x_shape), each row labelled on the left."""
    ncols = max(len(r) for r in rows)
    mosaics = [tile(r, ncols=ncols) for r in rows]
    h = mosaics[0].shape[0]
    grid = np.concatenate(mosaics, axis=0)
    fig = Figure(figsize=(CELL * ncols + 1.6, CELL * len(rows) + 0.6))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks([h * (i + 0.5) for i in range(len(rows))], labels)
    ax.set_xticks([])
    ax.set_title(title)
    for side in ax.spines.values():
        side.set_visible(False)
    return fig


def _terms(metrics: list[dict]) -> list[str]:
    """Metric suffixes to plot: elbo, log_px_z, kl first, then any others an objective logs. A
    standard error ``<term>_se`` is drawn as a band around ``<term>``, not as a panel of its own."""
    suffixes = {k.split("_", 1)[1] for m in metrics for k in m if k.startswith(("train_", "test_", "val_"))}
    if "elbo" in suffixes:
        suffixes.discard("loss")
    suffixes -= {s for s in suffixes if s.endswith("_se") and s[:-3] in suffixes}
    known = [s for s in TERM_TITLES if s in suffixes]
    return known + sorted(suffixes - set(known))


def curves_figure(runs: list[tuple[str, list[dict]]]) -> Figure | None:
    """Training curves of one or more runs (name, metrics rows), one panel per term."""
    terms = _terms([m for _, rows in runs for m in rows])
    if not terms:
        return None
    ncols = min(3, len(terms))
    nrows = -(-len(terms) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    epochs = [m["epoch"] for _, rows in runs for m in rows if "epoch" in m]
    for ax, term in zip(axes, terms):
        for i, (name, rows) in enumerate(runs):
            _plot_term(ax, rows, term, f"C{i}", name if len(runs) > 1 else "")
        ax.set_title(TERM_TITLES.get(term, term))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if epochs and min(epochs) == max(epochs):  # one epoch: its one tick, not fractions of an epoch
            ax.set_xticks([epochs[0]])
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(terms) :]:
        ax.set_visible(False)
    return fig


def _plot_term(ax, rows: list[dict], term: str, colour: str, name: str) -> None:
    for split, style in (("test", "-"), ("val", "-"), ("train", "--")):
        key = f"{split}_{term}"
        pts = [(m["epoch"], m[key], m.get(f"{key}_se")) for m in rows if key in m and "epoch" in m]
        if pts:
            x, y, se = zip(*pts)
            ax.plot(x, y, style, color=colour, marker="." if len(pts) < 30 else None, label=f"{name} {split}".strip())
            if None in y or None in se:
                continue
            if len(pts) > 1:
                ax.fill_between(x, np.subtract(y, se), np.add(y, se), color=colour, alpha=0.2, linewidth=0, label=f"{name} {split} ± 1 SE".strip())
            else:  # a band needs two epochs: one point gets an error bar
                ax.errorbar(x, y, yerr=se, color=colour, capsize=3, linestyle="none")


def kl_figure(ranking: latent.Ranking) -> Figure:
    """Bars of the per-dimension score in decreasing order; active units filled, others hollow."""
    order = ranking.order.tolist()
    scores = ranking.scores[ranking.order].numpy()
    active = ranking.active[ranking.order].numpy()
    fig = Figure(figsize=(max(4.0, 0.3 * len(order) + 1.5), 3.2), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(order))
    if active.any():
        ax.bar(pos[active], scores[active], color="C0", label="active unit")
    if not active.all():
        ax.bar(pos[~active], scores[~active], facecolor="none", edgecolor="C7", hatch="//", label="inactive")
    ax.set_xticks(pos, [str(d) for d in order], fontsize="small" if len(order) < 40 else 5)
    ax.set_xlabel("latent dimension (sorted)")
    ax.set_ylabel(ranking.what)
    ax.set_title(f"{int(active.sum())} of {len(order)} units active")
    ax.legend(fontsize="small")
    return fig


def reconstructions_figure(model, x: torch.Tensor, n: int = 10) -> Figure:
    """Two input rows, each above its reconstruction row."""
    x = x[: 2 * n]
    recon = model.decode_mean(latent.points(model, x))  # (2n, *x_shape)
    half = (len(x) + 1) // 2
    rows = [x[:half], recon[:half], x[half:], recon[half:]]
    labels = ["input", "reconstruction"] * 2
    keep = [i for i, r in enumerate(rows) if len(r)]
    return image_rows([rows[i] for i in keep], [labels[i] for i in keep], "inputs and reconstructions")


def samples_figure(model, seed: int = 0, n: int = 10, temperatures=(0.5, 0.75, 1.0)) -> Figure:
    """One row of prior samples per temperature the family supports."""
    rows, labels = [], []
    for t in temperatures:
        images = latent.prior_samples(model, n, t, seed)
        if images is not None:
            rows.append(images)
            labels.append(f"T = {t:g}")
    return image_rows(rows, labels, "decoded prior samples")
