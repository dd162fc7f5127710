"""report.html: one self-contained page (figures as data URIs, inline CSS, no scripts, no network)."""

from __future__ import annotations

import base64
import json
from html import escape

from .figures import FIGURES

CSS = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6475; --line: #d9dde5; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 1rem; max-width: 70rem; }
h1 { font-size: 1.5rem; margin: 0.5rem 0; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid var(--line); padding-bottom: 0.2rem; }
nav { display: flex; flex-wrap: wrap; gap: 0.2rem 0.9rem; } nav a { white-space: nowrap; } .muted { color: var(--muted); }
.scroll { overflow-x: auto; } table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; } figure { margin: 1rem 0; } figcaption { color: var(--muted); font-size: 0.9rem; }
img { max-width: 100%; height: auto; display: block; }
.side { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); }
pre { background: #f4f6f9; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
.headline { display: grid; gap: 0.7rem; grid-template-columns: repeat(auto-fill, minmax(min(18rem, 100%), 1fr)); margin: 1rem 0; }
.headline > div { border: 1px solid var(--line); border-radius: 0.4rem; padding: 0.5rem 0.8rem; }
.headline dt { color: var(--muted); font-size: 0.9rem; } .headline dd { margin: 0; }
.headline .value { font-size: 1.45rem; font-variant-numeric: tabular-nums; white-space: nowrap; } .headline .detail { color: var(--muted); font-size: 0.82rem; }
.warn { border-left: 0.25rem solid #c47f00; padding-left: 0.6rem; } summary { cursor: pointer; color: var(--muted); }
@media print { nav { display: none; } body { max-width: none; padding: 0; }
  figure, table, pre { break-inside: avoid; } h2 { break-after: avoid; } }
"""


def data_uri(payload: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(payload).decode("ascii")


def number(value) -> str:
    """Floats to 4 significant digits; everything else as text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def table(header: list[str], rows: list[list], numeric_from: int = 1) -> str:
    """An HTML table; cells from column ``numeric_from`` on are right-aligned numbers."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(_cell(c, i >= numeric_from) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _cell(value, numeric: bool) -> str:
    return f'<td class="num">{number(value)}</td>' if numeric else f"<td>{number(value)}</td>"


def figure(name: str, payload: bytes, heading: bool = True) -> str:
    title, caption = FIGURES[name]
    img = f'<img src="{data_uri(payload)}" alt="{escape(title)}">'
    head = f'<h2 id="{name}">{escape(title)}</h2>' if heading else ""
    return f"{head}<figure>{img}<figcaption>{escape(caption)}</figcaption></figure>"


def page(title: str, nav: list[tuple[str, str]], body: str) -> str:
    """The whole document: ``nav`` is (anchor, label) pairs for the table of contents."""
    links = "".join(f'<a href="#{a}">{escape(label)}</a>' for a, label in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>{escape(title)}</h1><nav>{links}</nav>{body}</body></html>\n"
    )


def config_block(config: dict) -> str:
    return f'<h2 id="config">Config</h2><pre>{escape(json.dumps(config, indent=2, sort_keys=True), quote=False)}</pre>'


def diagnostics_block(diag: dict) -> str:
    """Active units and the per-dimension scores, most informative first."""
    rows = [[f"z{d}", s, "yes" if a else "no"] for d, s, a in diag["dims"]]
    intro = f'<p>{diag["active_units"]} of {diag["latent_dim"]} latent units active (Cov_x E[z_d] &gt; 0.01).</p>'
    return '<h2 id="diagnostics">Diagnostics</h2>' + intro + table(["dimension", diag["what"], "active"], rows)


def headline(items: list[tuple[str, str, str]]) -> str:
    """The numbers read first, as cards: (label, value, detail) each, values set large."""
    cards = "".join(
        f'<div><dt>{escape(label)}</dt><dd class="value">{escape(value)}</dd><dd class="detail">{escape(detail)}</dd></div>' for label, value, detail in items
    )
    return f'<dl class="headline">{cards}</dl>'


def folded(summary: str, body: str) -> str:
    """``body`` behind a disclosure line that reads ``summary`` (no script: the browser's own <details>)."""
    return f"<details><summary>{escape(summary)}</summary>{body}</details>"


def warnings_block(warnings: list[str]) -> str:
    """What the run warned about while it trained, one line each."""
    return "".join(f'<p class="warn">{escape(w)}</p>' for w in warnings)
