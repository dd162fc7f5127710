"""An ensemble's page (``OUT/report.html``): each setting's metrics as mean ± SE over its seeds,
then the members side by side (``build.comparison_page``)."""

from __future__ import annotations

from pathlib import Path

from .. import runs
from . import html, space
from .build import FIGURE_DIR, REPORT, comparison_page
from .figures import FIGURES
from .run import open_run

#: The metrics of the seeds table, in order: (summary key, heading).
COLUMNS = (("elbo", "test ELBO"), ("nll", "NLL"), ("active_units", "active units"), ("kl", "KL"), ("train_seconds", "seconds"))


def cell(metric: dict | None) -> str:
    """``mean ± SE`` (SE over seeds; a per-image SE in brackets where there is one)."""
    if metric is None:
        return ""
    text = f"{metric['mean']:.2f}" + ("" if metric["se"] is None else f" ± {metric['se']:.2f}")
    return text + (f" (image SE {metric['image_se']:.2f})" if metric.get("image_se") is not None else "")


def seeds_table(summary: dict) -> str:
    """One row per setting: its seeds and each headline metric's mean ± SE over them."""
    rows = []
    for row in summary["settings"]:
        setting = ", ".join(f"{k}={v}" for k, v in row["setting"].items()) or "all"
        rows.append([setting, ", ".join(map(str, row["seeds"])), *[cell(row["metrics"].get(k)) for k, _ in COLUMNS]])
    header = ["setting", "seeds", *[h for _, h in COLUMNS]]
    return '<h2 id="seeds">Over seeds</h2>' + html.table(header, rows, numeric_from=2)


def drawn(run_dir: Path) -> dict[str, bytes]:
    """The figures a member's own report already drew (``RUN/figures``), so the page draws none twice."""
    folder = Path(run_dir) / FIGURE_DIR
    return {name: (folder / f"{name}.png").read_bytes() for name in FIGURES if (folder / f"{name}.png").is_file()}


def write_members_page(out: Path, names: list[str], summary: dict, seed: int = 0) -> Path:
    """``out/report.html``: the table over seeds, then every member's metrics and figures side by side."""
    views = [open_run(out / name) for name in names]
    pngs = [drawn(v.run_dir) or space.render(v, seed, progress=None) for v in views]
    page = comparison_page(views, pngs)
    head, sep, body = page.partition("<nav>")
    page = head + sep + '<a href="#seeds">Over seeds</a>' + body.replace("</nav>", "</nav>" + seeds_table(summary), 1)
    path = out / REPORT
    runs.atomic_write_bytes(path, page.encode("utf-8"))
    return path
