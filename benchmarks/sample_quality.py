"""Sample quality (``reparam eval --sample-quality``): known answers, and two MNIST runs ordered as their NLLs.

    python benchmarks/sample_quality.py [--n 5000] [--draws 3] [--epochs-a 1 --dim-a 2] [--epochs-b 5 --dim-b 20]

Per data set (digits, MNIST): the run's feature extractor (trained on first use, cached under a
temporary $REPARAM_CACHE), then FID, KID, precision and recall against n test images drawn at
random (digits: half its test set) of: n other test images (real against real, ~0), the same images
blurred by a Gaussian of 1 and 2 pixels (worse), and for MNIST the decoded prior draws of two
runs trained here, a short one with a 2-dimensional latent (A) and a longer one with 20 (B),
whose test NLL (from their summary.json) orders them. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from reparam import cli, config, runs  # noqa: E402
from reparam import data as data_mod  # noqa: E402
from reparam.evaluate import extractor, quality  # noqa: E402


def row(label: str, out: dict, nll: str = "-") -> str:
    def f(key: str, fmt: str) -> str:
        se = out[key + "_se"]
        return format(out[key], fmt) + ("" if se is None else f" ± {format(se, fmt)}")

    return f"| {label} | {nll} | {f('fid', '.3f')} | {f('kid', '.4f')} | {f('precision', '.3f')} | {f('recall', '.3f')} |"


def known_answers(source, n: int) -> tuple[dict, list[str]]:
    """The extractor's info and the rows: the other test images as they are and blurred."""
    ext = extractor.load_or_train(source)
    idx = quality.subset(len(source.test), 2 * n, 0)  # the reference is the run rows' (measure's subset for seed 0)
    real, other = source.test[idx[:n]], source.test[idx[n:]]
    rows = [row(f"{n} other test images", quality.compare(ext, real, other))]
    rows += [row(f"the same, blurred (sigma = {s} px)", quality.compare(ext, real, quality.blur(other, s))) for s in (1.0, 2.0)]
    return ext.info(), rows


def trained_run(folder: Path, name: str, dim: int, epochs: int) -> Path:
    run = folder / name
    cli.main(["train", "data.name=mnist", f"data.path={common.MNIST}", f"latent.dim={dim}", f"train.epochs={epochs}", "--quiet", "--out", str(run)])
    return run


def run_row(run: Path, label: str, n: int, draws: int) -> str:
    model = runs.load(run)
    summary = json.loads((run / "summary.json").read_text())
    out = quality.measure(model, runs.load_data(run, model.config), n=n, draws=draws)
    return row(label, out, f"{summary['nll']:.2f} ± {summary['nll_se']:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5000, help="MNIST images per set")
    p.add_argument("--draws", type=int, default=quality.DRAWS, help="sets of generated images per run")
    p.add_argument("--epochs-a", type=int, default=1)
    p.add_argument("--dim-a", type=int, default=2)
    p.add_argument("--epochs-b", type=int, default=5)
    p.add_argument("--dim-b", type=int, default=20)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    load0 = common.load_average()
    with tempfile.TemporaryDirectory(prefix="reparam-quality-") as tmp:
        os.environ["REPARAM_CACHE"] = tmp
        torch.manual_seed(0)
        digits = data_mod.load(config.load(None, []).data)
        d_info, d_rows = known_answers(digits, len(digits.test) // 2)
        mnist = data_mod.load(config.load(None, ["data.name=mnist", f"data.path={common.MNIST}"]).data)
        m_info, m_rows = known_answers(mnist, a.n)
        run_a = trained_run(Path(tmp), "a", a.dim_a, a.epochs_a)
        run_b = trained_run(Path(tmp), "b", a.dim_b, a.epochs_b)
        m_rows += [run_row(run_a, f"run A (latent.dim={a.dim_a}, {a.epochs_a} epoch): decoded prior draws", a.n, a.draws),
                   run_row(run_b, f"run B (latent.dim={a.dim_b}, {a.epochs_b} epochs): decoded prior draws", a.n, a.draws)]  # fmt: skip

    def head(data: str, n: int) -> str:
        return f"| {data}: set compared with {n} random test images | test NLL (nats) | FID | KID | precision | recall |\n|---|---:|---:|---:|---:|---:|"

    def extractor_line(info: dict) -> str:
        return f"extractor `{info['name']}`, sha256 `{info['sha256']}`, test accuracy {100 * info['test_accuracy']:.1f} %"

    body = f"""Command: `python benchmarks/sample_quality.py --n {a.n} --draws {a.draws} --epochs-a {a.epochs_a} --dim-a {a.dim_a} --epochs-b {a.epochs_b} --dim-b {a.dim_b}`.
Each set's features: the penultimate layer of the data's own classifier (`reparam.evaluate.extractor`, trained on the
training images on first use); the reference is n test images drawn at random (seed 0), each row as many images (test
sets are ordered: MNIST's first and last 5,000 test images come from different writers, so contiguous halves differ). Precision
and recall with k = {quality.K_NN}; KID over {quality.KID_SUBSETS} subsets of half a set (at most {quality.KID_SUBSET_SIZE}). A run's row: the
decoded means of p(x|z), z ~ p(z), ± SE over {a.draws} independent sets of draws; the other rows are one set each. Runs:
784-200-200 tanh MLP, Gaussian latent, Bernoulli decoder, dynamic binarization, Adam 1e-3, batch 100; their NLL from
summary.json (the final evaluation's importance-sampled estimate ± SE over images). Lower FID and KID, higher
precision and recall are better; numbers from different extractors do not compare.
{common.machine_state(load0, common.load_average())}

Digits ({len(digits.test) // 2} images per set; {extractor_line(d_info)}):

{head("digits", len(digits.test) // 2)}
{chr(10).join(d_rows)}

MNIST ({a.n} images per set; {extractor_line(m_info)}):

{head("MNIST", a.n)}
{chr(10).join(m_rows)}
"""
    common.publish("sample_quality", body, write=not a.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
