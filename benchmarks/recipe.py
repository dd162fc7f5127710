"""The shipped MNIST recipe (configs/mnist.toml) against Burda et al. (2016)'s one-layer VAE.

    python benchmarks/recipe.py [--run RUN] [--eval-k 5000]
    python benchmarks/recipe.py --compare BASE RUN... [--eval-k 1000]
    python benchmarks/recipe.py --compare BASE RUN BASE RUN... --pairs [--eval-k 1000]

Trains ``configs/mnist.toml`` on ``../shared/data/mnist.npz`` (or takes the finished run
RUN), then scores it as the paper does: NLL = -L_5000 on all 10,000 binarized test images,
with its standard error. Writes the curve of held-out ELBOs, the training time and the
final figures beside the paper's 86.76 nats into BENCHMARKS.md.

``--compare`` scores finished runs of the recipe that differ in a setting or two (the choices
behind it): each run's NLL on all test images with the same importance draws, and its paired
difference against the first run (BASE), with the settings in which it differs, its passes
and its seconds. With ``--pairs`` each run is set against the base that trained beside it,
when the runs were made two at a time and the host's speed drifted between pairs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import paired  # noqa: E402
from reparam import config, evaluate, runs  # noqa: E402
from reparam import data as data_mod
from reparam.train import train  # noqa: E402

RECIPE = common.ROOT / "configs" / "mnist.toml"
PAPER_NLL, PAPER_PASSES = 86.76, 3280  # Burda et al. 2016, Table 1: VAE, one stochastic layer, k = 1


def markdown(cfg: config.Config, metrics: list[dict], summary: dict, scored: dict, a) -> str:
    t = cfg.train
    evals = [m for m in metrics if "test_elbo" in m]
    curve = ["| epoch | seconds | learning rate | test ELBO | active units |", "|---|---|---|---|---|"]
    curve += [f"| {m['epoch']} | {m['seconds']:.0f} | {m['lr']:.2e} | {m['test_elbo']:.2f} | {m.get('test_active_units', '')} |" for m in evals]
    passes, minutes = summary["passes"], summary["train_seconds"] / 60
    gap = scored["nll"] - PAPER_NLL
    if a.run:
        command = (
            "`reparam train configs/mnist.toml data.path=../shared/data/mnist.npz --out RUN`, then "
            f"`python benchmarks/recipe.py --run RUN --eval-k {a.eval_k}{f' --threads {a.threads}' if a.threads else ''}`"
        )
    else:
        command = f"`python benchmarks/recipe.py --eval-k {a.eval_k}` (trains the recipe, then scores the run)"
    length = f"a {t.budget} wall-clock budget (the schedule laid over it)" if t.budget else f"{t.epochs} epochs"
    verdict = (f"{gap:.2f} nats short of the paper after {passes / PAPER_PASSES:.0%} of its passes" if gap > 0
               else f"{-gap:.2f} nats below the paper's NLL after {passes / PAPER_PASSES:.0%} of its passes")  # fmt: skip
    return f"""Command: {command}. 784-200-200-50 tanh, Bernoulli decoder,
dynamically binarized MNIST, Adam from {t.lr:g} with a {t.lr_schedule} schedule to {t.lr_final:g},
batch {t.batch_size}, train.threads={t.threads}, {length}. NLL = -L_{scored["k"]} on all
{scored["n"]:,} test images with one standard error over images; "passes" are passes over the
60,000 training images. The paper trained with batch 20 and its own schedule for 3,280 passes.

| | passes | training time | test ELBO | NLL ± SE (nats) | active units |
|---|---|---|---|---|---|
| Burda et al. 2016, VAE k = 1 | {PAPER_PASSES:,} | - | - | {PAPER_NLL:.2f} | 19 |
| this recipe | {passes:,.1f} | {minutes:.1f} min | {scored["elbo"]:.2f} | {scored["nll"]:.2f} ± {scored["nll_se"]:.2f} | {scored["active_units"]} |

{verdict}. The test ELBO moved by {evals[-1]["test_elbo"] - evals[-2]["test_elbo"]:+.2f} nats over the
last {evals[-1]["seconds"] - evals[-2]["seconds"]:.0f} s while the rate decayed to zero.

{chr(10).join(curve)}
"""


def flat(raw: dict, prefix: str = "") -> dict:
    """A run's config.json as ``section.key`` -> value."""
    out: dict = {}
    for key, value in raw.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def compare(paths: list[str], eval_k: int, note: str = "", section: str = "recipe_choices", pairs: bool = False) -> str:
    """The ``--compare`` table: one row per run, the first one the base; with ``pairs``, the runs
    come as BASE RUN BASE RUN ... and each RUN is set against the BASE before it (the run that
    trained beside it), settings and NLL alike."""
    if pairs and len(paths) % 2:
        raise SystemExit(f"--pairs takes runs two by two (BASE RUN ...), got {len(paths)}")
    rows, settings = [], []
    for path in paths:
        run = Path(path)
        model = runs.load(run)
        x = data_mod.load(model.config.data).test
        log_px, _ = evaluate.log_likelihood(model, x, eval_k)
        nll = -log_px.double()
        summary = json.loads((run / "summary.json").read_text())
        rows.append(dict(per_image=nll, nll=float(nll.mean()), se=float(nll.std() / math.sqrt(len(nll))), summary=summary,
                         elbo=evaluate.elbo_terms(model, x)["elbo"], active=summary.get("active_units")))  # fmt: skip
        settings.append(flat(json.loads((run / "config.json").read_text())))
        print(f"{run}: NLL {rows[-1]['nll']:.2f} ± {rows[-1]['se']:.2f}", flush=True)
    base = settings[0]
    ignore = {"data.path", "train.progress"}
    against = "its base" if pairs else "the first"
    lines = [f"| run | settings (against {against}{', the row above' if pairs else ''}) | passes | training s | test ELBO | NLL ± SE (nats) | against {against} | active units |",
             "|---|---|---:|---:|---:|---|---|---:|"]  # fmt: skip
    for i, (path, row, setting) in enumerate(zip(paths, rows, settings)):
        ref = i - i % 2 if pairs else 0
        changed = ", ".join(f"`{k}={setting[k]}`" for k in sorted(setting) if k not in ignore and setting[k] != settings[ref].get(k)) or "(base)"
        s = row["summary"]
        lines.append(f"| {Path(path).name} | {changed} | {s['passes']:.1f} | {s['train_seconds']:.0f} | {row['elbo']:.2f} | "
                     f"{row['nll']:.2f} ± {row['se']:.2f} | {paired(row, rows[ref])} | {row['active']} |")  # fmt: skip
    flags = (f" --section {section}" if section != "recipe_choices" else "") + (" --pairs" if pairs else "")
    return f"""Command: `python benchmarks/recipe.py --compare {" ".join(Path(p).name for p in paths)} --eval-k {eval_k}{flags}` on runs of
`reparam train configs/mnist.toml data.path=../shared/data/mnist.npz train.budget={base["train.budget"]} train.threads={base["train.threads"]} ...`
with the settings shown. NLL = -L_{eval_k} on all 10,000 test images, the same importance draws for every run, so
the differences against {"each run's base" if pairs else "the first run"} are paired (± one standard error over images). One seed per row.{f" {note}" if note else ""}

{chr(10).join(lines)}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="score this finished run of the recipe instead of training one")
    p.add_argument("--compare", nargs="+", metavar="RUN", help="score these finished runs against the first (BASE)")
    p.add_argument("--section", default="recipe_choices", help="with --compare: the BENCHMARKS.md section to write")
    p.add_argument("--note", default="", help="with --compare: how the runs were made (e.g. two at a time)")
    p.add_argument("--pairs", action="store_true", help="with --compare: runs come as BASE RUN BASE RUN ..., each RUN against the BASE before it")
    p.add_argument("--eval-k", type=int, default=5000)
    p.add_argument("--threads", type=int, default=0, help="threads for the scoring (default: the run's)")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.compare:
        torch.set_num_threads(a.threads or torch.get_num_threads())
        common.publish(a.section, compare(a.compare, a.eval_k, a.note, a.section, a.pairs), write=not a.no_write, script="recipe")
        return 0
    if a.run:
        run = Path(a.run)
    else:
        cfg = config.load(RECIPE, [f"data.path={common.MNIST}", "train.progress=false"])
        run = train(cfg, Path(tempfile.mkdtemp(prefix="recipe-")) / "run")
    model = runs.load(run)
    fixed = model.config.train.threads if isinstance(model.config.train.threads, int) else 0  # "auto": torch's own count
    torch.set_num_threads(a.threads or fixed or torch.get_num_threads())
    scored = evaluate.evaluate(model, data_mod.load(model.config.data).test, a.eval_k)
    summary = json.loads((run / "summary.json").read_text())
    md = markdown(model.config, runs.read_jsonl(run / "metrics.jsonl"), summary, scored, a)
    common.publish("recipe", md, write=not a.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
