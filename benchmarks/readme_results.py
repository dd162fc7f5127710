"""Copy the tables of every BENCHMARKS.md section into the README's Results section.

    python benchmarks/readme_results.py

Each benchmark script writes its full section to BENCHMARKS.md (with the machine and the
command); this puts the tables of each section into README.md between the
``<!-- results -->`` and ``<!-- /results -->`` markers, so the README never holds a number
that BENCHMARKS.md, and through it a script, does not.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import BENCHMARKS, ROOT  # noqa: E402
from reparam.files import atomic_write_bytes  # noqa: E402

TITLES = {
    "dataloader": "In-memory batches vs a per-item DataLoader (MNIST training step)",
    "speed": "Speed against Pythae on the same model",
    "iwae_table": "Burda et al. 2016, Table 1, one stochastic layer",
    "latents": "Every latent family on MNIST",
    "estimators": "Discrete latents: Gumbel-softmax against the score function, scored as discrete models (Jang et al. 2017, Table 1)",
    "scale": "Conv VAE throughput, one and two processes",
    "recipe": "The MNIST recipe against the paper's one-layer VAE",
    "explore": "Explorer decode latency",
}


def sections(text: str) -> dict[str, str]:
    return dict(re.findall(r"<!-- begin (\S+) -->\n(.*?)<!-- end \1 -->", text, re.S))


def tables(body: str) -> str:
    """Every Markdown table of a section, in order, separated by a blank line."""
    blocks, current = [], []
    for line in body.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    return "\n\n".join(blocks)


def results(text: str) -> str:
    parts = []
    for name, body in sections(text).items():
        table = tables(body)
        if table:
            title = TITLES.get(name, name)
            parts.append(f"**{title}** (`benchmarks/{name}.py`; details in BENCHMARKS.md)\n\n{table}\n")
    return "\n".join(parts)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    begin, end = "<!-- results -->", "<!-- /results -->"
    if end not in text:
        text = text.replace(begin, f"{begin}\n{end}")
    block = f"{begin}\n{results(BENCHMARKS.read_text())}{end}"
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    atomic_write_bytes(readme, text.encode())


if __name__ == "__main__":
    main()
