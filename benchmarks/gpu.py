"""GPU rows: training and IS-evaluation throughput of the MLP and conv VAEs, fp32 and bf16.

    python benchmarks/gpu.py [--steps 200] [--eval-n 1000] [--k 5000]

Needs a CUDA GPU (it says so and exits otherwise). Training: images/s through the trainer's
own step (batching, binarization, forward, backward, Adam) after 5 warm-up steps, for the
IWAE paper's one-layer MLP (784-200-200-50 tanh, Gaussian latent, Bernoulli likelihood) and
the conv VAE of ``benchmarks/scale.py``, at batch 100 (the recipe's) and 1024, fp32 and
bf16 autocast; the achieved FLOP/s (``torch.utils.flop_counter`` on one step) as a fraction
of the GPU's dense peak (bf16 against the tensor-core bf16 peak, fp32 against the non-tensor
fp32 peak). From the batch-20 rate: the time the full 3,280-pass IWAE protocol (Burda et
al. 2016: 3^i epochs at learning rate 1e-3 * 10^(-i/7), i = 0..7, batch 20) would take, a
projection from the measured rate (no such run here). IS evaluation: test images/s of
``reparam.evaluate.log_likelihood`` at K samples on ``--eval-n`` test images, fp32 and bf16
decoder, with the change in the mean log p(x) that bf16 makes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.scale import MODEL as CONV  # noqa: E402
from benchmarks.scale import PEAKS, flops_per_image, images_per_second  # noqa: E402
from reparam import config, devices, evaluate  # noqa: E402
from reparam import data as data_mod  # noqa: E402
from reparam.model import build  # noqa: E402
from reparam.train import Trainer  # noqa: E402

MLP = ["model.arch=mlp", "model.hidden=[200,200]", "model.activation=tanh", "latent.dim=50", "data.name=mnist", "data.binarize=dynamic",
       "train.progress=false", "train.report=false"]  # fmt: skip
PASSES = 3280  # sum of 3^i, i = 0..7


def trainer(model: list[str], batch: int, precision: str, data: data_mod.Data, device: str) -> Trainer:
    cfg = config.load(None, [*model, f"data.path={common.MNIST}", f"train.batch_size={batch}", f"train.device={device}", f"train.precision={precision}",
                             "train.threads=0"])  # fmt: skip
    torch.manual_seed(0)
    net = devices.prepare(build(cfg, data.x_shape).to(device), False, False)
    return Trainer(cfg, net, data, Path(tempfile.mkdtemp(prefix="reparam-gpu-")))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-n", type=int, default=1000)
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--device", default="cuda", help="cpu: a quick check of the script itself")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA GPU; none here", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if a.device == "cuda" else common.cpu_name()
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    data = data_mod.load(config.DataConfig(name="mnist", path=str(common.MNIST), binarize="dynamic"))
    rows, protocol = [], []
    for label, model in (("MLP 784-200-200-50", MLP), ("conv [32, 64], 256, latent 16", CONV)):
        for batch in (20, 100, 1024):
            for precision in ("fp32", "bf16"):
                t = trainer(model, batch, precision, data, a.device)
                rate = images_per_second(t, a.steps)
                achieved = rate * flops_per_image(t)
                frac = f"{achieved / peak[precision == 'fp32']:.2%}" if peak else "peak unknown"
                rows.append(f"| {label} | {batch} | {precision} | {rate:,.0f} | {achieved / 1e12:.3f} TFLOP/s ({frac}) |")
                print(rows[-1], flush=True)
                if batch == 20 and model is MLP:
                    protocol.append(f"{precision}: {PASSES * len(data.train) / rate / 3600:.1f} h")
    ev = []
    cfg = config.load(None, [*MLP, f"data.path={common.MNIST}", f"train.device={a.device}"])
    torch.manual_seed(0)
    model = build(cfg, data.x_shape).to(a.device).eval()
    x = data.test[: a.eval_n].to(a.device)
    means = {}
    for precision in ("fp32", "bf16"):
        evaluate.log_likelihood(model, x[:100], 100, precision=precision)  # warm-up
        sync()
        t0 = time.perf_counter()
        log_px, _ = evaluate.log_likelihood(model, x, a.k, precision=precision)
        sync()
        seconds = time.perf_counter() - t0
        means[precision] = float(log_px.double().mean())
        ev.append(f"| {precision} | {a.k} | {len(x)} | {len(x) / seconds:,.1f} | {seconds:.1f} |")
        print(ev[-1], flush=True)
    body = f"""Command: `python benchmarks/gpu.py --steps {a.steps} --eval-n {a.eval_n} --k {a.k}`. GPU: {name}, torch {torch.__version__}.
Training images/s through the trainer's step (batching, dynamic binarization, forward, backward, Adam), {a.steps} steps
after 5 warm-up steps; achieved FLOP/s from `torch.utils.flop_counter` on one step, as a fraction of the dense peak
(bf16: tensor cores; fp32: without them), from the table in `benchmarks/scale.py`. Small models at small batches leave
a GPU mostly idle: the step's time is kernel launches and Python, not arithmetic.

| model | batch | precision | images/s | achieved (fraction of dense peak) |
|---|---:|---|---:|---|
{chr(10).join(rows)}

The full IWAE protocol (3,280 passes over 60,000 images at batch 20, Burda et al. 2016), projected from the batch-20
rates above (not run here): {", ".join(protocol)}.

Importance-sampled log-likelihood of an untrained MLP model (the cost does not depend on the weights) on the first
{len(x)} test images; bf16 changes the mean log p(x) by {means["bf16"] - means["fp32"]:+.4f} nats.

| decoder precision | K | images | images/s | seconds |
|---|---:|---:|---:|---:|
{chr(10).join(ev)}
"""
    common.publish("gpu", body, write=not a.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
