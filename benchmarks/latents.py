"""Every latent family, trained with the same networks on dynamically binarized MNIST.

    python benchmarks/latents.py --epochs 5             # then see BENCHMARKS.md, section "latents"
    python benchmarks/latents.py --budget 900           # pick the epochs to fit ~900 s in all

For each family: test ELBO (full test set), importance-sampled log-likelihood with
k = 1000 and its standard error (on the first ``--is-n`` test images), active units
(Burda et al. 2016), and wall seconds per epoch on this machine. The relaxed families
run with both objectives (``latent.kl=discrete``, the default, and ``relaxed``); every
row says which model its ELBO and log p(x) describe, and the relaxed rows add the
discrete model they stand for. Published points of comparison are printed beside the
table; they come from far longer training.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import MNIST, publish  # noqa: E402

#: Options that make a family usable at latent.dim = DIM (categorical: 2 variables x 5 classes).
OPTIONS = {"categorical": ["latent.classes=5"], "categorical-exact": ["latent.classes=5"]}
#: Families trained twice, once per objective (see reparam.latents.relaxed).
RELAXED = ("bernoulli", "categorical")
DIM = 10
HIDDEN = "[200,200]"
PUBLISHED = """Published points of comparison (test log-likelihood, nats; long training, other networks):

| source | model | log p(x) |
|---|---|---|
| Davidson et al. 2018, Table 1 (d = 10, 500 IS samples) | S-VAE (von Mises-Fisher) | -93.16 |
| Davidson et al. 2018, Table 1 (d = 10, 500 IS samples) | N-VAE (Gaussian) | -93.84 |
| Nalisnick & Smyth 2017 | Gaussian VAE | -93.93 |
| Nalisnick & Smyth 2017 | Kumaraswamy stick-breaking VAE | -98.01 |

The stick-breaking model of Nalisnick & Smyth is not what `kumaraswamy` here is (independent
Kumaraswamy coordinates with a Beta prior), and `spherical` is Power Spherical, not vMF.
"""


def rows(families: list[str]) -> list[tuple[str, str, list[str]]]:
    """(row name, family, extra overrides): the relaxed families once per objective."""
    out = []
    for family in families:
        extra = OPTIONS.get(family, [])
        if family in RELAXED:
            out += [(f"{family} kl=discrete", family, [*extra, "latent.kl=discrete"]), (f"{family} kl=relaxed", family, [*extra, "latent.kl=relaxed"])]
        else:
            out.append((family, family, extra))
    return out


def overrides(family: str, extra: list[str], epochs: int) -> list[str]:
    return [
        "data.name=mnist", f"data.path={MNIST}", "data.binarize=dynamic", f"latent.family={family}",
        f"latent.dim={DIM}", f"model.hidden={HIDDEN}", f"train.epochs={epochs}", "train.eval_k=1",
        "train.progress=false", "train.threads=1", "train.report=false", *extra,
    ]


def run_family(name: str, family: str, extra: list[str], epochs: int, k: int, is_n: int, out: Path) -> dict:
    from reparam import config
    from reparam.train import train

    cfg = config.load(None, overrides(family, extra, epochs))
    return score(name, cfg, train(cfg, out / name.replace(" ", "-").replace("=", "-")), epochs, k, is_n)


def run_seeds(name: str, family: str, extra: list[str], epochs: int, k: int, is_n: int, out: Path, seeds: list[int]) -> dict:
    """The family's row trained once per seed, the seeds as one stack (``reparam.train.train_many``):
    each member scored as ``run_family`` scores a run, then mean ± SE over the seeds."""
    import statistics

    from reparam import runs
    from reparam.train import train_many

    folder = train_many([*overrides(family, extra, epochs), f"seed=[{','.join(map(str, seeds))}]"], out / name.replace(" ", "-").replace("=", "-"), progress=False)
    each = [score(name, runs.read_config(folder / f"seed-{s}"), folder / f"seed-{s}", epochs, k, is_n) for s in seeds]
    row = dict(each[0])
    for key in ("elbo", "log_px", "active", "sec_per_epoch"):
        values = [float(r[key]) for r in each]
        row[key], row[f"{key}_seeds"] = statistics.mean(values), values
        row[f"{key}_sse"] = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    row["se"] = statistics.mean(r["se"] for r in each)  # the per-image SE, averaged over the seeds
    return row


def score(name: str, cfg, run_dir: Path, epochs: int, k: int, is_n: int) -> dict:
    import torch

    from reparam import data, evaluate, load
    from reparam.evaluate import diagnostics

    model = load(run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    test = data.load(cfg.data).test
    torch.manual_seed(0)
    result = evaluate.evaluate(model, test[:is_n], k, dashboard=False)
    scored = model.with_family(model.family.scored())
    row = {
        "row": name, "model": result["model"],
        "elbo": evaluate.elbo_terms(scored, test)["elbo"],
        "log_px": -result["nll"], "se": result["nll_se"],
        "active": diagnostics.active_units(model, test), "dim": DIM,
        "sec_per_epoch": metrics[-1]["seconds"] / epochs,
    }
    if "discrete" in result:  # the discrete model a relaxed model stands for
        disc = result["discrete"]
        row["discrete"] = (evaluate.elbo_terms(model.with_family(model.family.discrete()), test)["elbo"], -disc["nll"], disc["nll_se"])
    if "objective" in result:  # the mixed objective a kl=discrete run trains
        row["objective"] = evaluate.elbo_terms(model, test)["elbo"]
    return row


def table(rows: list[dict], epochs: int, k: int, is_n: int) -> str:
    head = (
        f"Same networks for every family: MLP {HIDDEN} (tanh), latent.dim={DIM}, Bernoulli likelihood, "
        f"Adam 1e-3, batch 100, **{epochs} epochs** of dynamically binarized MNIST (60,000 images), "
        f"family defaults otherwise ({'; '.join(f'{f}: {o}' for f, o in OPTIONS.items())}). "
        f"Test ELBO on all 10,000 test images (one sample each); log p(x) by importance sampling with "
        f"k={k} on the first {is_n} test images, +- one standard error over images. Both describe the model named "
        "in the second column: for the relaxed families, `kl=discrete` (Jang et al. 2017, the default) trains a mixed "
        "objective (relaxed sample into the decoder, discrete KL; its value is in the last column) and is scored as the "
        "discrete model it trains; `kl=relaxed` (Maddison et al. 2017) is scored as the relaxed (Concrete) model, and "
        "the discrete model it stands for (hard values into the decoder) is scored beside it. "
        f"One torch thread per run. Seconds per epoch include the per-epoch test ELBO. "
        f"Reproduce: `python benchmarks/latents.py --epochs {epochs} --is-n {is_n}`.\n\n"
        f"| family | model scored | test ELBO | log p(x), k={k} | discrete model: ELBO, log p(x) | active units | s / epoch | trained objective |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        disc = "-" if "discrete" not in r else f"{r['discrete'][0]:.2f}, {r['discrete'][1]:.2f} +- {r['discrete'][2]:.2f}"
        obj = "-" if "objective" not in r else f"{r['objective']:.2f}"
        lines.append(
            f"| `{r['row']}` | `{r['model']}` | {r['elbo']:.2f} | {r['log_px']:.2f} +- {r['se']:.2f} | {disc} "
            f"| {r['active']} / {r['dim']} | {r['sec_per_epoch']:.1f} | {obj} |"
        )
    return head + "\n".join(lines) + "\n\n" + PUBLISHED


def seeds_table(rows: list[dict], epochs: int, k: int, is_n: int, seeds: list[int]) -> str:
    head = (
        f"The same rows as above, each trained with {len(seeds)} seeds ({', '.join(map(str, seeds))}) as one ensemble "
        f"(`seed=[...]`: the seeds of a family step as one stack), **{epochs} epochs**; every other setting as above. "
        f"Each number is the mean over the seeds ± its standard error over the seeds (the spread a claim about a family "
        f"has to beat); log p(x) by importance sampling with k={k} on the first {is_n} test images, whose per-image SE "
        f"(averaged over the seeds) is given beside it. Seconds per epoch are the stack's, for all {len(seeds)} members. "
        f"Reproduce: `python benchmarks/latents.py --epochs {epochs} --is-n {is_n} --seeds {','.join(map(str, seeds))}`.\n\n"
        f"| family | model scored | test ELBO (± SE over seeds) | log p(x), k={k} (± SE over seeds) | per-image SE | active units | s / epoch, {len(seeds)} seeds |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| `{r['row']}` | `{r['model']}` | {r['elbo']:.2f} ± {r['elbo_sse']:.2f} | {r['log_px']:.2f} ± {r['log_px_sse']:.2f} | {r['se']:.2f} "
        f"| {r['active']:.1f} ± {r['active_sse']:.1f} / {r['dim']} | {r['sec_per_epoch']:.1f} |"
        for r in rows
    ]
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from reparam import latents

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="epochs per family (default: from --budget)")
    ap.add_argument("--budget", type=float, default=900.0, help="seconds for the whole run when --epochs is not given")
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--is-n", type=int, default=1000, help="test images for the importance-sampled log p(x)")
    ap.add_argument("--families", nargs="*", default=latents.names())
    ap.add_argument("--seeds", default="", help="train each row with these seeds as one ensemble (0,1,2): the section latents_seeds")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    a = ap.parse_args(argv)
    if not MNIST.is_file():
        sys.exit(f"MNIST not found at {MNIST}; set REPARAM_MNIST")
    epochs = a.epochs or probe_epochs(a.budget, len(a.families), a.k, a.is_n)
    if a.seeds:
        seeds = [int(x) for x in a.seeds.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            got = []
            for name, family, extra in rows(a.families):
                start = time.perf_counter()
                got.append(run_seeds(name, family, extra, epochs, a.k, a.is_n, Path(tmp), seeds))
                print(f"{name}: {got[-1]['log_px']:.2f} ± {got[-1]['log_px_sse']:.2f} ({time.perf_counter() - start:.0f} s)", flush=True)
        publish("latents_seeds", seeds_table(got, epochs, a.k, a.is_n, seeds), write=not a.no_write, script="latents")
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, family, extra in rows(a.families):
            start = time.perf_counter()
            results.append(run_family(name, family, extra, epochs, a.k, a.is_n, Path(tmp)))
            print(f"{name}: {results[-1]} ({time.perf_counter() - start:.0f} s)", flush=True)
    markdown = table(results, epochs, a.k, a.is_n)
    publish("latents", markdown, write=not a.no_write)


def probe_epochs(budget: float, n_families: int, k: int, is_n: int) -> int:
    """Epochs per family that fit ``budget`` seconds, from a one-epoch Gaussian run."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_family("gaussian", "gaussian", [], 1, k, is_n, Path(tmp))
        one = time.perf_counter() - start
    per_family = budget / (n_families + len(RELAXED))
    return max(1, int(per_family / one))


if __name__ == "__main__":
    main()
