"""Gradient estimators for discrete latents on MNIST, like for like with Jang et al. (2017), Table 1.

    python benchmarks/estimators.py --steps 10000                      # every row, then BENCHMARKS.md
    python benchmarks/estimators.py --rows bern-gumbel,bern-nvil --steps 500 --no-write

Every row trains the same network for the same number of steps and is scored as the same
kind of model: the discrete one. The network is that of Jang et al.'s released code
(784-512-256 ReLU encoder to the latent's logits, 256-512-784 ReLU decoder, Bernoulli
pixels; the paper states only the latent: 200 bits, or 20 variables x 10 classes), with
Adam at 1e-3 decayed by 0.9 every 1,000 steps and batch 100 as in that code. The
Gumbel-softmax rows train Jang et al.'s objective (``latent.kl=discrete``: the relaxed
sample into the decoder, the discrete KL) with tau = max(0.5, exp(-r t)), r = 1e-4 (the
paper's grid is r in {1e-5, 1e-4}); the straight-through rows (``latent.hard=true``) feed
the decoder the hard sample. The score-function rows train the exact discrete latent:
no baseline (SF), NVIL's learned baseline (Mnih & Gregor 2014), and VIMCO (the IWAE bound
with K = 5 and leave-one-out baselines, Mnih & Rezende 2016). After training, each model is
scored as the discrete model (hard bits or one-hots into the decoder, discrete q and
prior): its test ELBO on all 10,000 test images and its importance-sampled -log p(x)
(k = 1000, the paper's m = 1000 multi-sample bound, on the first ``--is-n`` test images).
The gradient lab measures each row's own estimator (encoder variance and SNR) at the
start, middle and end. Writes the "estimators" section of BENCHMARKS.md and
docs/estimators_elbo_time.png (the discrete model's test ELBO against training seconds).
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
from reparam import config, evaluate  # noqa: E402
from reparam import data as data_mod  # noqa: E402
from reparam.evaluate import gradvar  # noqa: E402
from reparam.model import build  # noqa: E402
from reparam.train import Trainer  # noqa: E402

BERN = ["latent.family=bernoulli", "latent.dim=200"]
CAT = ["latent.family=categorical", "latent.dim=200", "latent.classes=10"]
BERN_EXACT = ["latent.family=bernoulli-exact", "latent.dim=200"]
CAT_EXACT = ["latent.family=categorical-exact", "latent.dim=200", "latent.classes=10"]
GUMBEL = ["latent.kl=discrete", "latent.temperature=1.0", "latent.temperature_min=0.5", "latent.anneal_rate=1e-4"]
VIMCO = ["objective.name=iwae", "objective.k=5"]
#: row -> (overrides, estimator spec, Jang et al. 2017 Table 1 VAE -ELBO or None)
ROWS = {
    "bern-gumbel": ([*BERN, *GUMBEL], "pathwise", 105.0),
    "bern-st-gumbel": ([*BERN, *GUMBEL, "latent.hard=true"], "pathwise", 111.5),
    "bern-sf": (BERN_EXACT, "score", 112.2),
    "bern-nvil": (BERN_EXACT, "score:nvil", None),
    "bern-vimco": ([*BERN_EXACT, *VIMCO], "score:loo", None),
    "cat-gumbel": ([*CAT, *GUMBEL], "pathwise", 101.5),
    "cat-st-gumbel": ([*CAT, *GUMBEL, "latent.hard=true"], "pathwise", 107.8),
    "cat-sf": (CAT_EXACT, "score", 110.6),
    "cat-nvil": (CAT_EXACT, "score:nvil", None),
    "cat-vimco": ([*CAT_EXACT, *VIMCO], "score:loo", None),
}
PLOT = ROOT / "docs" / "estimators_elbo_time.png"
BATCH = 100


def make_trainer(data, row: str, a) -> Trainer:
    overrides, spec, _ = ROWS[row]
    estimator, _, baseline = spec.partition(":")
    epochs = math.ceil(a.steps * BATCH / len(data.train)) + 1  # one more: the last epoch's evaluation never runs
    cfg = config.load(None, [
        "data.name=mnist", "data.binarize=dynamic", "model.hidden=[512,256]", "model.activation=relu", *overrides,
        f"objective.estimator={estimator}", f"objective.baseline={baseline or 'none'}", f"seed={a.seed}",
        f"train.batch_size={BATCH}", f"train.epochs={epochs}", "train.eval_every=1000000", "train.progress=false",
        "train.lr=1e-3", "train.lr_schedule=exponential",
        f"train.lr_final={1e-3 * 0.9 ** (epochs * math.ceil(len(data.train) / BATCH) / 1000):.6g}",
    ])  # fmt: skip
    torch.manual_seed(a.seed)
    return Trainer(cfg, build(cfg, data.x_shape, train_x=data.train), data, Path(tempfile.mkdtemp(prefix="estimators-")))


def lab(trainer: Trainer, spec: str, x: torch.Tensor, replicates: int) -> dict:
    """The row's own estimator, measured by the lab with its own random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        r = gradvar.measure(trainer.model, trainer.cfg.objective, x, [spec], replicates)["estimators"][spec]
    trainer.model.train()
    enc = r["groups"]["encoder"]
    return {"variance": r["variance"], "snr": r["snr"], "enc_variance": enc["variance"], "enc_snr": enc["snr"]}


def discrete_elbo(trainer: Trainer, n: int) -> float:
    """Test ELBO of the discrete model on the first n test images."""
    model = trainer.model.eval()
    value = evaluate.elbo_terms(model.with_family(model.family.scored()), trainer.held_out.x[:n])["elbo"]
    trainer.model.train()
    return value


def train_row(data, row: str, a) -> dict:
    """a.steps optimizer steps; curve points and lab numbers are taken with the clock stopped."""
    trainer, spec = make_trainer(data, row, a), ROWS[row][1]
    x_lab = gradvar.fixed_batch(trainer.batches.train_x, trainer.cfg, BATCH, a.seed)
    curve, labs, clock = [(0.0, discrete_elbo(trainer, 2000))], [(0.0, lab(trainer, spec, x_lab, a.replicates))], 0.0
    marks = [round(a.steps * i / a.points) for i in range(1, a.points + 1)]
    while trainer.step < a.steps:
        t0 = time.perf_counter()
        trainer.advance()  # eval_every is beyond the run: no held-out evaluation, no checkpoint
        clock += time.perf_counter() - t0
        if trainer.step == marks[0]:
            curve.append((clock, discrete_elbo(trainer, 2000)))
            if len(marks) in (1, (a.points + 1) // 2):  # middle and end
                labs.append((clock, lab(trainer, spec, x_lab, a.replicates)))
            marks.pop(0)
    return finish_row(trainer, row, a, curve, labs, clock)


def finish_row(trainer: Trainer, row: str, a, curve, labs, seconds: float) -> dict:
    model = trainer.model.eval()
    scored = evaluate.evaluate(model, trainer.held_out.x[: a.is_n], a.is_k, dashboard=False)
    elbo = evaluate.elbo_terms(model.with_family(model.family.scored()), trainer.held_out.x)["elbo"]
    objective = scored.get("objective", {}).get("elbo")
    out = dict(row=row, spec=ROWS[row][1], steps=trainer.step, seconds=seconds, curve=curve, labs=labs)
    out.update(elbo=elbo, nll=scored["nll"], se=scored["nll_se"], objective=objective, model=scored["model"])
    print(f"{row}: discrete-model test ELBO {elbo:.2f}, -log p(x) {out['nll']:.2f} ± {out['se']:.2f}, "
          f"{trainer.step} steps in {seconds:.0f} s", flush=True)  # fmt: skip
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
    ax.set_ylabel("discrete model's -ELBO, 2,000 test images")
    ax.set_ylim(top=min(260.0, ax.get_ylim()[1]))
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt_lab(labs) -> str:
    return " / ".join(f"{v['enc_variance']:.2g}, {v['enc_snr']:.2f}" for _, v in labs)


def markdown(results: list[dict], a, load: tuple[float, float]) -> str:
    lines = [
        "| row | model scored | estimator | steps | train s | test -ELBO | -log p(x) ± SE | trained objective | "
        "encoder gradient variance, SNR: start / middle / end | Jang et al. 2017 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        overrides, _, paper = ROWS[r["row"]]
        latent = r["model"] + (", hard sample" if "latent.hard=true" in overrides else "") + (", IWAE K=5" if VIMCO[0] in overrides else "")
        objective = "-" if r["objective"] is None else f"{-r['objective']:.2f}"
        lines.append(
            f"| {r['row']} | {latent} | {r['spec']} | {r['steps']} | {r['seconds']:.0f} | {-r['elbo']:.2f} "
            f"| {r['nll']:.2f} ± {r['se']:.2f} | {objective} | {fmt_lab(r['labs'])} | {'-' if paper is None else paper} |"
        )
    rows = ",".join(r["row"] for r in results)
    return f"""Command: `python benchmarks/estimators.py --steps {a.steps} --rows {rows} --threads {a.threads} --is-n {a.is_n}`.
{a.steps} steps of batch {BATCH} ({a.steps * BATCH / 60000:.1f} epochs) per row on {a.threads} thread(s); 1-minute load
average {load[0]:.2f} before and {load[1]:.2f} after. The network of Jang et al.'s released code: 784-512-256 ReLU
encoder to the latent's logits, 256-512-784 ReLU decoder, Bernoulli pixels; Adam 1e-3 decayed by 0.9 every 1,000
steps; dynamically binarized MNIST (the paper used a fixed binarization). Gumbel rows: Jang et al.'s objective
(relaxed sample into the decoder, discrete KL to the uniform prior), tau = max(0.5, exp(-1e-4 t)) updated every step;
ST: the hard sample into the decoder. Score rows: the exact discrete latent, no baseline (SF), NVIL, or VIMCO
(IWAE bound, K = 5, leave-one-out baselines).

**Every row is scored as the discrete model** (hard bits or one-hots into the decoder, discrete posterior and
prior): test -ELBO on all 10,000 test images, and -log p(x) by importance sampling with k = {a.is_k} on the first
{a.is_n} test images (+- SE over images). "Trained objective" is the Gumbel rows' own training objective on the
{a.is_n} images (it is no model's bound). The last column is Jang et al. (2017), Table 1, VAE -ELBO on MNIST
(their evaluation: a 1000-sample bound of the discretized model, i.e. the quantity of our -log p(x) column) after
training of unstated length; NVIL and VIMCO are not in their table. The encoder's gradient variance and SNR come
from `reparam.gradvar` on one fixed minibatch of {BATCH}, {a.replicates} estimates of the row's own estimator.
The SNR is a mean over parameters of |mean| / std, so a few parameters whose gradient is almost deterministic
(for the Gumbel rows: the logits of latent variables the decoder has stopped using, driven by the closed-form
discrete KL alone) can dominate it; the variance column is the robust comparison.

{chr(10).join(lines)}

![the discrete model's test -ELBO against training time](docs/{PLOT.name})
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10000, help="optimizer steps per row")
    p.add_argument("--rows", default=",".join(ROWS), help=f"subset of {', '.join(ROWS)}")
    p.add_argument("--points", type=int, default=8, help="points on the ELBO-time curve")
    p.add_argument("--replicates", type=int, default=20)
    p.add_argument("--is-k", type=int, default=1000)
    p.add_argument("--is-n", type=int, default=2000)
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
