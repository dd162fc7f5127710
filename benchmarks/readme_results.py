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
    "recipe_choices": "The recipe's choices, each measured apart on short budgets",
    "recipe_choices_15m": "The recipe against its best short-budget rival, 15 minutes each",
    "recipe_choices_15m_pairs": "More of the recipe's choices over the full 15 minutes, each beside its own base",
    "explore": "Explorer decode latency",
    "iwae_table_2layer": "Burda et al. 2016, Table 1, two stochastic layers, each paired with its one-layer model",
    "priors": "Learned priors at equal passes (MNIST, 3 seeds)",
    "flows": "Flow posteriors at equal passes (MNIST, 3 seeds)",
    "layers": "One against two stochastic layers at equal passes (MNIST, 3 seeds)",
    "labels_m2": "Semi-supervised M2 on the CPU, MNIST with 100 labels (Kingma et al. 2014)",
    "labels_speed": "Relaxed against exact labels: M2 training steps/s on the CPU (Jang et al. 2017)",
    "labels_speed_gpu": "Relaxed against exact labels: M2 training steps/s on a GPU (Jang et al. 2017)",
    "labels_m2_gpu": "Semi-supervised M2, MNIST with 100 labels (Kingma et al. 2014)",
    "labels_cvae_gpu": "Conditional VAE: -log p(x|y) against the unconditional -log p(x)",
    "gpu": "GPU rows: training and IS-evaluation throughput",
    "whole": "The whole process with its defaults, against Pythae's TrainingPipeline",
    "contention": "A training epoch beside a busy neighbour, by thread setting",
    "profile_step": "Where a training step's time goes (MNIST MLP, batch 100)",
    "cost": "How cost grows: training and IS time by batch size, latent dimension and K",
    "precision": "Training in bfloat16 on the CPU: speed and test NLL against fp32",
    "ensemble": "Many runs at once: members trained as one stack against one run alone",
    "latents_seeds": "Every latent family on MNIST, three seeds trained as one stack, 3 epochs (mean ± SE over seeds)",
    "sample_quality": "Sample quality: real, blurred and generated images against the test set (FID, KID, precision, recall)",
    "disentangle": "beta-VAE on generated shapes: reconstruction and disentanglement metrics against beta (5 seeds)",
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
            written = re.search(r"Written by `(benchmarks/\S+\.py)`", body)  # a script may write several sections
            script = written.group(1) if written else f"benchmarks/{name}.py"
            gpu = re.search(r"NVIDIA [A-Z]\w+", body)  # a section measured on a GPU names it
            where = f", on an {gpu.group(0)} GPU" if gpu else ""
            parts.append(f"**{title}** (`{script}`{where}; details in BENCHMARKS.md)\n\n{table}\n")
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
