"""Gradient estimators on MNIST: the same networks, the same wall-clock budget each.

    python benchmarks/estimators.py --budget 60          # seconds of training per row
    python benchmarks/estimators.py --rows gauss-pathwise,gauss-score --budget 30 --no-write

Each row trains the same MLP (784-200-latent-200-784, tanh, Bernoulli likelihood, Adam 1e-3,
batch 100, dynamically binarized MNIST) for ``--budget`` seconds of training time (the
measurements below are taken with the clock stopped) and reports: the test ELBO on all
10,000 test images, the importance-sampled log-likelihood (k = ``--is-k`` on the first
``--is-n`` test images, +- SE), and the lab's gradient variance and SNR of the row's own
estimator (``reparam.gradvar``, one fixed minibatch of 100, ``--replicates`` estimates) at
the start, middle and end. Writes the "estimators" section of BENCHMARKS.md and
docs/estimators_elbo_time.png (test ELBO on 2,000 images against training seconds).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import common  # noqa: E402
from reparam import config, data as data_mod, evaluate, gradvar  # noqa: E402
from reparam.model import build  # noqa: E402
from reparam.train import Trainer  # noqa: E402

#: row name -> (latent overrides, estimator spec, Jang et al. 2017 Table 1 VAE -ELBO or None)
ROWS = {
    "gauss-pathwise": (["latent.family=gaussian", "latent.dim=20"], "pathwise", None),
    "gauss-score": (["latent.family=gaussian", "latent.dim=20"], "score:nvil", None),
    "bern-exact-score": (["latent.family=bernoulli-exact", "latent.dim=200"], "score:nvil", 112.2),
    "bern-gumbel": (["latent.family=bernoulli", "latent.dim=200"], "pathwise", 105.0),
    "cat-exact-score": (["latent.family=categorical-exact", "latent.dim=200", "latent.classes=10"], "score:nvil", 110.6),
    "cat-gumbel": (["latent.family=categorical", "latent.dim=200", "latent.classes=10"], "pathwise", 101.5),
}
PLOT = ROOT / "docs" / "estimators_elbo_time.png"


def make_trainer(data, row: str, a) -> Trainer:
    latent, spec, _ = ROWS[row]
    estimator, _, baseline = spec.partition(":")
    cfg = config.load(None, [
        "data.name=mnist", "data.binarize=dynamic", "model.hidden=[200]", "model.activation=tanh", *latent,
        f"objective.estimator={estimator}", f"objective.baseline={baseline or 'none'}", f"seed={a.seed}",
    ])  # fmt: skip
    torch.manual_seed(a.seed)
    return Trainer(cfg, build(cfg, data.x_shape), data, Path(tempfile.mkdtemp(prefix="estimators-")))


def lab(trainer: Trainer, spec: str, x: torch.Tensor, replicates: int) -> dict:
    """The row's own estimator, measured by the lab with its own random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        r = gradvar.measure(trainer.model, trainer.cfg.objective, x, [spec], replicates)["estimators"][spec]
    trainer.model.train()
    enc = r["groups"]["encoder"]
    return {"variance": r["variance"], "snr": r["snr"], "enc_variance": enc["variance"], "enc_snr": enc["snr"]}


def test_elbo(trainer: Trainer, n: int) -> float:
    trainer.model.eval()
    value = evaluate.elbo_terms(trainer.model, trainer.test_x[:n])["elbo"]
    trainer.model.train()
    return value


def train_row(data, row: str, a) -> dict:
    """Train for a.budget seconds of step time; curve points and lab numbers off the clock."""
    trainer, spec = make_trainer(data, row, a), ROWS[row][1]
    x_lab = gradvar.fixed_batch(trainer.train_x, trainer.cfg, 100, a.seed)
    curve, labs, clock, steps = [(0.0, test_elbo(trainer, 2000))], [(0.0, lab(trainer, spec, x_lab, a.replicates))], 0.0, 0
    marks = [a.budget * i / a.points for i in range(1, a.points + 1)]
    n, bs = len(trainer.train_x), 100
    while marks:
        for idx in torch.randperm(n, generator=trainer.gen).split(bs):
            t0 = time.perf_counter()
            trainer.train_step(data_mod.binarize(trainer.train_x[idx], trainer.gen))
            steps += 1
            trainer.model.on_step(steps)
            clock += time.perf_counter() - t0
            if clock >= marks[0]:
                curve.append((clock, test_elbo(trainer, 2000)))
                if len(marks) in (1, (a.points + 1) // 2):  # middle and end
                    labs.append((clock, lab(trainer, spec, x_lab, a.replicates)))
                marks.pop(0)
                if not marks:
                    break
    return finish_row(trainer, row, a, curve, labs, steps)


def finish_row(trainer: Trainer, row: str, a, curve, labs, steps: int) -> dict:
    model = trainer.model.eval()
    torch.manual_seed(a.seed)
    log_px, _ = evaluate.log_likelihood(model, trainer.test_x[: a.is_n], a.is_k)
    nll = -log_px.double()
    out = dict(row=row, spec=ROWS[row][1], steps=steps, epochs=steps * 100 / len(trainer.train_x), curve=curve, labs=labs)
    out.update(elbo=test_elbo(trainer, len(trainer.test_x)), nll=float(nll.mean()), se=float(nll.std() / math.sqrt(len(nll))))
    print(f"{row}: test ELBO {out['elbo']:.2f}, NLL {out['nll']:.2f} ± {out['se']:.2f}, {steps} steps", flush=True)
    return out


def plot(results: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for r in results:
        t, e = zip(*r["curve"])
        ax.plot(t, [-v for v in e], marker=".", label=f"{r['row']} ({r['spec']})")
    ax.set_xlabel("training seconds (measurements excluded)")
    ax.set_ylabel("-ELBO on 2,000 test images (nats)")
    ax.set_ylim(top=min(260.0, ax.get_ylim()[1]))
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt_lab(labs) -> str:
    return " / ".join(f"{v['enc_variance']:.2g}, {v['enc_snr']:.2f}" for _, v in labs)


def markdown(results: list[dict], a, load: tuple[float, float]) -> str:
    lines = [
        "| row | latent | estimator | steps (epochs) | test -ELBO | -log p(x) ± SE | encoder gradient variance, SNR: start / middle / end | Jang et al. 2017 -ELBO |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        latent, _, paper = ROWS[r["row"]]
        fam = " ".join(s.split("=", 1)[1] for s in latent)
        lines.append(
            f"| {r['row']} | {fam} | {r['spec']} | {r['steps']} ({r['epochs']:.1f}) | {-r['elbo']:.2f} "
            f"| {r['nll']:.2f} ± {r['se']:.2f} | {fmt_lab(r['labs'])} | {'-' if paper is None else paper} |"
        )
    rows = ",".join(r["row"] for r in results)
    return f"""Command: `python benchmarks/estimators.py --budget {a.budget:g} --rows {rows} --threads {a.threads}`.
Same networks for every row: MLP 784-200-latent-200-784 (tanh), Bernoulli likelihood, Adam 1e-3, batch 100,
dynamically binarized MNIST. Each row trained for **{a.budget:g} s** of step time on {a.threads} thread(s);
1-minute load average {load[0]:.2f} before and {load[1]:.2f} after (a shared 2-core machine: other
benchmarks ran at the same time, so steps per second vary between rows). Test ELBO on all 10,000 test
images; -log p(x) by importance sampling with k = {a.is_k} on the first {a.is_n} test images. Gradient
variance (mean over the encoder's parameters) and SNR (mean of |mean| / std over the encoder's parameters;
the estimators differ in the encoder's gradient, the decoder's is pathwise in every row) of the row's own
estimator, from `reparam.gradvar` on one fixed minibatch of 100, {a.replicates} estimates, at the start,
middle and end of training.
For the relaxed rows (bern-gumbel, cat-gumbel) the ELBO and log p(x) are those of the relaxed model
(Concrete densities, the decoder sees the relaxed sample), not of a discrete one. The published column
is Jang et al. (2017), Table 1, VAE -ELBO on binarized MNIST (Bernoulli 784-200-784, categorical
20x10), after far longer training: a point of reference, not a like-for-like comparison.

{chr(10).join(lines)}

![test -ELBO against training time](docs/{PLOT.name})
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=60.0, help="training seconds per row")
    p.add_argument("--rows", default=",".join(ROWS), help=f"subset of {', '.join(ROWS)}")
    p.add_argument("--points", type=int, default=8, help="points on the ELBO-time curve")
    p.add_argument("--replicates", type=int, default=20)
    p.add_argument("--is-k", type=int, default=200)
    p.add_argument("--is-n", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = data_mod.load(config.DataConfig(name="mnist", path=str(common.MNIST), binarize="dynamic"))
    load0 = os.getloadavg()[0]
    results = [train_row(data, row, a) for row in a.rows.split(",") if row]
    md = markdown(results, a, (load0, os.getloadavg()[0]))
    if not a.no_write:
        plot(results, PLOT)
    common.publish("estimators", md, write=not a.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
