"""Assemble report.html for one run, or a side-by-side comparison of several."""

from __future__ import annotations

from html import escape
from pathlib import Path

import torch

from .. import runs
from ..files import check_output
from . import html, latent, space
from .figures import FIGURES, curves_figure, png
from .run import RunView, open_run

REPORT = "report.html"
FIGURE_DIR = "figures"


def diagnostics(view: RunView) -> dict:
    """Active units and (dimension, score, active) triples, most informative first."""
    with torch.inference_mode():
        r = latent.rank_dimensions(view.given(), view.test)
    dims = [(d, float(r.scores[d]), bool(r.active[d])) for d in r.order.tolist()]
    return {"active_units": int(r.active.sum()), "latent_dim": len(dims), "what": r.what, "dims": dims}


def metric_rows(summary: dict) -> list[list]:
    """(name, value) rows of the scalar metrics; a nested block (the discrete model a relaxed
    family stands for, a trained objective) becomes rows named ``block: key``."""
    rows = []
    for key, value in sorted(summary.items()):
        if isinstance(value, (int, float, str)):
            rows.append([key, value])
        elif isinstance(value, dict):
            rows += [[f"{key}: {k}", v] for k, v in sorted(value.items()) if isinstance(v, (int, float, str))]
    return rows


def nats(value: float, se: float | None = None) -> str:
    return f"{value:.2f} nats" if se is None else f"{value:.2f} ± {se:.2f} nats"


def likelihood_item(summary: dict, run_dir: Path) -> tuple[str, str, str]:
    """The importance-sampled NLL with its SE and the K and images it took."""
    given = summary.get("labels", "").startswith("given")
    label = "NLL = −log p(x | y), given the labels" if given else "NLL = −log p(x)"
    if summary.get("nll") is None:
        return label, "not estimated", f"train.eval_k=0; reparam eval {run_dir} --k 5000 estimates it"
    n, n_test = summary["n"], summary.get("n_test", summary["n"])
    images = f"all {n:,} test images" if n == n_test else f"{n:,} of {n_test:,} test images"
    detail = f"importance sampling with K = {summary['k']:,} on {images}"
    if "bits_per_dim" in summary:
        detail += f"; {summary['bits_per_dim']:.3f} bits/dim"
    if "nll_original_units" in summary:
        detail += f"; {summary['nll_original_units']:.2f} nats in the columns' original units"
    return label, nats(summary["nll"], summary["nll_se"]), detail


def collapse_items(summary: dict) -> list[tuple[str, str, str]]:
    """Active units, the KL and the mutual information I(x; z): the posterior-collapse dashboard's headline."""
    items = []
    per_layer, dims = summary.get("active_units_per_layer"), summary.get("layer_dims")
    if per_layer and dims:  # a hierarchy: every layer, bottom first
        value = " + ".join(f"{a} of {d}" for a, d in zip(per_layer, dims))
        items.append(("active units", value, "per stochastic layer, bottom first, with Cov_x E_q[z_d] > 0.01"))
    elif "active_units" in summary:
        items.append(("active units", f"{summary['active_units']} of {summary['latent_dim']}", "latent dimensions with Cov_x E_q[z_d] > 0.01"))
    if "kl" in summary:
        items.append(("KL(q(z|x) ‖ p(z))", nats(summary["kl"]), "per test image, summed over the latent dimensions"))
    if "mi" in summary:
        bound = f"at most log N = {summary['mi_max']:.2f}" if "mi_max" in summary else ""
        marginal = f"marginal KL(q(z) ‖ p(z)) {summary['kl_marginal']:.2f}" if "kl_marginal" in summary else ""
        items.append(("mutual information I(x; z)", nats(summary["mi"], summary.get("mi_se")), "; ".join(t for t in (bound, marginal) if t)))
    return items


def headline_items(summary: dict, run_dir: Path) -> list[tuple[str, str, str]]:
    """(label, value, detail) of the numbers read first: test ELBO, NLL +- SE, M2's classification
    error, active units, KL and I(x; z); each only where the summary has it."""
    items = []
    if "elbo" in summary:
        terms = f"E_q log p(x|z) = {summary['log_px_z']:.2f} nats, " if "log_px_z" in summary else ""
        items.append(("test ELBO", nats(summary["elbo"]), f"{terms}on {summary.get('n_test', summary.get('n', 0)):,} test images"))
    items.append(likelihood_item(summary, run_dir))
    if "classification_error" in summary:
        se = summary.get("classification_error_se")
        value = f"{100 * summary['classification_error']:.1f}" + ("" if se is None else f" ± {100 * se:.1f}") + "%"
        items.append(("classification error", value, "q(y|x) on the test images (M2)"))
    return items + collapse_items(summary)


def metrics_block(summary: dict, run_dir: Path) -> str:
    """The headline numbers, the run's warnings, then every scalar of summary.json folded away."""
    if not summary:
        return '<h2 id="metrics">Final metrics</h2><p class="muted">No summary.json: the run has not finished.</p>'
    rows = metric_rows(summary)
    every = html.folded(f"Every number of summary.json ({len(rows)})", html.table(["metric", "value"], rows))
    budgeted = f'<p class="muted">The NLL was budgeted (train.eval_k=auto): reparam eval {escape(str(run_dir))} --k 5000 gives the full-precision number.</p>'
    head = html.headline(headline_items(summary, run_dir)) + (budgeted if "nll_plan" in summary else "")
    return '<h2 id="metrics">Final metrics</h2>' + head + html.warnings_block([*summary.get("collapse", []), *summary.get("warnings", [])]) + every


def run_page(view: RunView, pngs: dict[str, bytes]) -> str:
    """The single-run report: metrics, diagnostics, every figure, the config."""
    parts = [f'<p class="muted">{escape(str(view.run_dir))}</p>', metrics_block(view.summary, view.run_dir)]
    if view.conditional:
        names, label = view.model.class_names, view.label
        assert names is not None and label is not None  # a conditional run has its classes and a class to draw
        name = names[label]
        parts.append(f'<p class="muted">A conditional model: its figures are drawn given class {escape(name)}, with that '
                     "class's test images (reparam report RUN --label CLASS for another); the diagnostics read q(z|x, y) at "
                     "each test image's label.</p>")  # fmt: skip
    parts.append(html.diagnostics_block(diagnostics(view)))
    parts += [html.figure(name, pngs[name]) for name in FIGURES if name in pngs]
    parts.append(html.config_block(view.config))
    nav = [("metrics", "Metrics"), ("diagnostics", "Diagnostics")]
    nav += [(name, FIGURES[name][0]) for name in FIGURES if name in pngs] + [("config", "Config")]
    return html.page(view.title, nav, "".join(parts))


def write_report(run_dir: str | Path, out: str | Path | None = None, seed: int = 0, label: str | None = None, source=None,
                 progress: bool | None = None, overwrite: bool = False) -> Path:  # fmt: skip
    """Draw every figure into RUN/figures/*.png and write RUN/report.html (or ``out``); returns its path.

    RUN/report.html is rewritten at every call; an existing ``out`` is replaced only with
    ``overwrite``, and never a device or a FIFO (``files.check_output``: OutputError).
    ``label``: for a conditional run, the class (name or index) whose figures are drawn.
    ``source``: the run's data if the caller holds them (else they are read again);
    ``progress``: a bar over the figures (None: only on a terminal). Raises RunError for a
    folder without a model and DataError when the run's data is gone.
    """
    out = None if out is None else check_output(out, overwrite)  # before any work
    view = open_run(run_dir, label=label, source=source)
    out = out or check_output(view.run_dir / REPORT, overwrite=True)  # its own page: a device or a FIFO there is still refused
    pngs = space.render(view, seed, progress)
    folder = view.run_dir / FIGURE_DIR
    folder.mkdir(exist_ok=True)
    for name, payload in pngs.items():
        runs.atomic_write_bytes(folder / f"{name}.png", payload)
    runs.atomic_write_bytes(out, run_page(view, pngs).encode("utf-8"))
    return out


def _setting(view: RunView) -> dict:
    cfg = view.model.config
    return {"family": cfg.latent.family, "latent dim": cfg.latent.dim, "data": cfg.data.name, "objective": cfg.objective.name}


#: The summary's keys of the headline numbers, in the order a comparison lists them first.
HEADLINE = ("elbo", "nll", "nll_se", "k", "n", "classification_error", "classification_error_se", "active_units", "kl", "mi", "mi_se")


def comparison_table(views: list[RunView]) -> str:
    """Settings and the headline metrics, one column per run; every other number folded below."""
    cols = [{**_setting(v), **{k: x for k, x in v.summary.items() if isinstance(x, (int, float))}} for v in views]
    present = {k for c in cols for k in c}
    first = list(_setting(views[0])) + [k for k in HEADLINE if k in present]
    header = ["", *[v.name for v in views]]
    rows = [[k] + [c.get(k, "") for c in cols] for k in first]
    rest = [[k] + [c.get(k, "") for c in cols] for k in sorted(present - set(first))]
    folded = html.folded(f"Every other number of summary.json ({len(rest)})", html.table(header, rest)) if rest else ""
    return '<h2 id="metrics">Settings and final metrics</h2>' + html.table(header, rows) + folded


def comparison_page(views: list[RunView], pngs: list[dict[str, bytes]]) -> str:
    """Metrics table, overlaid curves, then each figure of every run side by side."""
    parts = [comparison_table(views)]
    curves = curves_figure([(v.name, v.metrics) for v in views])
    if curves is not None:
        parts.append(html.figure("curves", png(curves)))
    names = [n for n in FIGURES if n != "curves" and any(n in p for p in pngs)]
    for name in names:
        cells = [f"<div><h3>{escape(v.name)}</h3>{html.figure(name, p[name], False)}</div>" for v, p in zip(views, pngs) if name in p]
        parts.append(f'<h2 id="{name}">{escape(FIGURES[name][0])}</h2><div class="side">{"".join(cells)}</div>')
    nav = [("metrics", "Metrics")] + [(n, FIGURES[n][0]) for n in (["curves"] if curves else []) + names]
    return html.page(f"Comparison of {len(views)} runs", nav, "".join(parts))


def write_comparison(run_dirs: list[str | Path], out: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write one page comparing several runs side by side to ``out``; returns its path.

    An existing ``out`` is replaced only with ``overwrite``, and never a device or a FIFO
    (``files.check_output``: OutputError)."""
    check_output(out, overwrite)
    views = [open_run(d) for d in run_dirs]
    pngs = [space.render(v, seed, progress=None) for v in views]
    runs.atomic_write_bytes(out, comparison_page(views, pngs).encode("utf-8"))
    return Path(out)
