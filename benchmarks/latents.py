"""Every latent family, trained with the same networks on dynamically binarized MNIST.

    python benchmarks/latents.py --epochs 5             # then see BENCHMARKS.md, section "latents"
    python benchmarks/latents.py --budget 900           # pick the epochs to fit ~900 s in all

For each family: test ELBO (full test set), importance-sampled log-likelihood with
k = 1000 and its standard error (on the first ``--is-n`` test images), active units
(Burda et al. 2016), and wall seconds per epoch on this machine. Published points of
comparison are printed beside the table; they come from far longer training.
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


def overrides(family: str, epochs: int) -> list[str]:
    return [
        "data.name=mnist", f"data.path={MNIST}", "data.binarize=dynamic", f"latent.family={family}",
        f"latent.dim={DIM}", f"model.hidden={HIDDEN}", f"train.epochs={epochs}", "train.eval_k=1",
        "train.progress=false", "train.threads=1", "train.report=false", *OPTIONS.get(family, []),
    ]


def run_family(family: str, epochs: int, k: int, is_n: int, out: Path) -> dict:
    import torch

    from reparam import config, data, diagnostics, evaluate, load
    from reparam.train import train

    cfg = config.load(None, overrides(family, epochs))
    run_dir = train(cfg, out / family)
    model = load(run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    test = data.load(cfg.data).test
    torch.manual_seed(0)
    result = evaluate.evaluate(model, test[:is_n], k, dashboard=False)
    return {
        "family": family,
        "elbo": evaluate.elbo_terms(model, test)["elbo"],
        "log_px": -result["nll"], "se": result["nll_se"],
        "active": diagnostics.active_units(model, test), "dim": DIM,
        "sec_per_epoch": metrics[-1]["seconds"] / epochs,
    }


def table(rows: list[dict], epochs: int, k: int, is_n: int) -> str:
    head = (
        f"Same networks for every family: MLP {HIDDEN} (tanh), latent.dim={DIM}, Bernoulli likelihood, "
        f"Adam 1e-3, batch 100, **{epochs} epochs** of dynamically binarized MNIST (60,000 images), "
        f"family defaults otherwise ({'; '.join(f'{f}: {o}' for f, o in OPTIONS.items())}). "
        f"Test ELBO on all 10,000 test images (one sample each); log p(x) by importance sampling with "
        f"k={k} on the first {is_n} test images, +- one standard error over images. "
        f"One torch thread (the 2-core machine is shared; two threads ran 7x slower per step under that load). "
        f"Seconds per epoch include the per-epoch test ELBO. "
        f"Reproduce: `python benchmarks/latents.py --epochs {epochs} --is-n {is_n}`.\n\n"
        "| family | test ELBO | log p(x), k=1000 | active units | s / epoch |\n|---|---|---|---|---|\n"
    )
    lines = [
        f"| `{r['family']}` | {r['elbo']:.2f} | {r['log_px']:.2f} +- {r['se']:.2f} | {r['active']} / {r['dim']} | {r['sec_per_epoch']:.1f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n\n" + PUBLISHED


def main(argv: list[str] | None = None) -> None:
    from reparam import latents

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="epochs per family (default: from --budget)")
    ap.add_argument("--budget", type=float, default=900.0, help="seconds for the whole run when --epochs is not given")
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--is-n", type=int, default=1000, help="test images for the importance-sampled log p(x)")
    ap.add_argument("--families", nargs="*", default=latents.names())
    ap.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    a = ap.parse_args(argv)
    if not MNIST.is_file():
        sys.exit(f"MNIST not found at {MNIST}; set REPARAM_MNIST")
    epochs = a.epochs or probe_epochs(a.budget, len(a.families), a.k, a.is_n)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in a.families:
            start = time.perf_counter()
            rows.append(run_family(family, epochs, a.k, a.is_n, Path(tmp)))
            print(f"{family}: {rows[-1]} ({time.perf_counter() - start:.0f} s)", flush=True)
    markdown = table(rows, epochs, a.k, a.is_n)
    publish("latents", markdown, write=not a.no_write)


def probe_epochs(budget: float, n_families: int, k: int, is_n: int) -> int:
    """Epochs per family that fit ``budget`` seconds, from a one-epoch Gaussian run."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_family("gaussian", 1, k, is_n, Path(tmp))
        one = time.perf_counter() - start
    per_family = budget / n_families
    return max(1, int(per_family / one))


if __name__ == "__main__":
    main()
