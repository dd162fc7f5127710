"""``reparam gradvar RUN_OR_CONFIG [KEY=VALUE ...]``: the gradient-variance lab on the command line.

Prints a table, writes gradvar.json and gradvar.png (variance and SNR per estimator and
layer group, log scale) into --out (default: the run folder, or the current folder for a
config), or with --json prints the JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .errors import ReparamError


def table(result: dict) -> str:
    """A plain-text table: one row per estimator."""
    head = f"{'estimator':<22}{'variance':>11}{'SNR':>9}{'SNR enc':>9}{'SNR dec':>9}{'cos(pw)':>9}{'ms/est':>9}"
    lines = [
        f"{result['objective']} bound, K = {result['k']}, batch {result['batch']}, {result['replicates']} estimates each",
        head,
    ]
    for name, r in result["estimators"].items():
        g, cos = r["groups"], r["cosine_pathwise"]
        lines.append(
            f"{name:<22}{r['variance']:>11.3e}{r['snr']:>9.3f}{g['encoder']['snr']:>9.3f}{g['decoder']['snr']:>9.3f}"
            f"{'-' if cos is None else format(cos, '.3f'):>9}{1000 * r['seconds_per_estimate']:>9.1f}"
        )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path:
    """Bars of gradient variance and SNR per estimator, encoder and decoder, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["estimators"])
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.6 * len(names) + 2), 3.4))
    for ax, key in zip(axes, ("variance", "snr")):
        for i, group in enumerate(("encoder", "decoder")):
            vals = [result["estimators"][n]["groups"][group][key] for n in names]
            xs = [j + (i - 0.5) * 0.38 for j in range(len(names))]
            ax.bar(xs, [v if v and math.isfinite(v) and v > 0 else float("nan") for v in vals], width=0.38, label=group)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title("gradient variance (mean over parameters)" if key == "variance" else "SNR |mean| / std", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cmd_gradvar(a: argparse.Namespace) -> int:
    from . import estimators, runs
    from .gradvar import check_specs, default_specs, load_target, measure

    if a.replicates < 2:
        raise ReparamError(f"--replicates must be >= 2 (a variance needs two estimates), got {a.replicates}")
    if a.batch < 1 or (a.k is not None and a.k < 1):
        raise ReparamError("--batch and --k must be >= 1")
    model, cfg, x = load_target(a.target, a.batch, a.seed, a.settings)
    k = a.k or cfg.objective.k
    has, mismatch = estimators.has_rsample(model.family), model.family.kl_mismatch()
    specs = [s for s in a.estimators.split(",") if s] if a.estimators else default_specs(has, cfg.objective.name, k, mismatch)
    check_specs(specs, has, cfg.objective.name, k, cfg.latent.family, mismatch)
    import torch

    torch.manual_seed(a.seed)
    result = measure(model, cfg.objective, x, specs, a.replicates, k)
    out = Path(a.out) if a.out else (Path(a.target) if Path(a.target).is_dir() else Path("."))
    if not out.is_dir():
        raise ReparamError(f"folder {out} does not exist; create it or choose another --out")
    runs.write_json(out / "gradvar.json", result)
    plot(result, out / "gradvar.png")
    print(json.dumps(result, sort_keys=True) if a.json else table(result) + f"\n{out / 'gradvar.json'}\n{out / 'gradvar.png'}")
    return 0


def add_commands(sub) -> None:
    g = sub.add_parser("gradvar", help="gradient variance and SNR of each estimator on one minibatch")
    g.add_argument("target", metavar="RUN_OR_CONFIG", help="a run folder (its checkpoint) or a TOML config (at initialization)")
    g.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="overrides for a config file (e.g. objective.k=5)")
    g.add_argument("--estimators", help="comma-separated, e.g. pathwise,score,score:loo,stl,dreg (default: all that apply)")
    g.add_argument("--replicates", type=int, default=100, help="gradient estimates per estimator (default 100)")
    g.add_argument("--batch", type=int, default=100, help="minibatch size (default 100)")
    g.add_argument("--k", type=int, help="samples per example (default: the config's objective.k)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", help="folder for gradvar.json and gradvar.png (default: the run folder, or .)")
    g.add_argument("--json", action="store_true", help="print the JSON object instead of the table")
    g.set_defaults(func=cmd_gradvar)
