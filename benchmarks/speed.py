"""Training and IS-evaluation throughput of reparam against Pythae 0.1.2, side by side.

    python benchmarks/speed.py [--threads 2] [--rounds 2] [--eval-n 200] [--no-pythae]

Identical model (784-200-200-50, tanh, Bernoulli decoder, Adam 1e-3), MNIST with dynamic
binarization, the same thread count. Pythae runs in its own virtualenv
(``benchmarks/.pythae-venv``, created here with ``pip install torch==2.13.0
pythae==0.1.2``) through ``benchmarks/pythae_worker.py``; the two are timed alternately,
round by round, in one run, so that load from other processes hits both alike.

Figures: training images/s over whole epochs (batching and binarization included), that
time as a multiple of the same matrix multiplications alone (forward and backward, the
floor for this model on this machine), and IS log-likelihood throughput (images x
samples / s, K = 1000) against Pythae's ``VAE.get_nll``. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from reparam import config, evaluate  # noqa: E402
from reparam import data as data_mod
from reparam.model import build  # noqa: E402
from reparam.train import Trainer  # noqa: E402

HERE = Path(__file__).resolve().parent
VENV = HERE / ".pythae-venv"
PIP = ["torch==2.13.0", "pythae==0.1.2"]
LAYERS = [(784, 200), (200, 200), (200, 100), (50, 200), (200, 200), (200, 784)]


def venv_python() -> Path | None:
    """The Pythae virtualenv's interpreter, creating the environment if needed; None on failure."""
    py = VENV / "bin" / "python"
    check = [str(py), "-c", "import pythae, torch"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PIP], check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as e:
        print(f"speed: Pythae skipped: cannot install {' '.join(PIP)} into {VENV} ({e})", file=sys.stderr)
        return None
    return py


class Pythae:
    """A Pythae worker process speaking one JSON line per command."""

    def __init__(self, python: Path, threads: int):
        self.proc = subprocess.Popen(
            [str(python), str(HERE / "pythae_worker.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.info = self.call("setup", mnist=str(common.MNIST), threads=threads, seed=0)

    def call(self, cmd: str, **kwargs) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kwargs}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"Pythae worker died during {cmd}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def reparam_trainer(data, batch_size: int, compiled: bool) -> Trainer:
    cfg = config.load(None, [
        "data.name=mnist", "data.binarize=dynamic", "latent.dim=50", "model.hidden=[200,200]",
        "model.activation=tanh", f"train.batch_size={batch_size}", "train.progress=false",
    ])  # fmt: skip
    model = build(cfg, data.x_shape)
    if compiled:
        model.encoder, model.decoder = torch.compile(model.encoder), torch.compile(model.decoder)
    return Trainer(cfg, model, data, Path(tempfile.mkdtemp(prefix="reparam-speed-")))


def reparam_epoch(trainer: Trainer) -> float:
    """Seconds for one pass as reparam's trainer makes it: shuffle, gather, binarize, step."""
    start = time.perf_counter()
    n, bs = len(trainer.batches.train_x), trainer.cfg.train.batch_size
    for idx in torch.randperm(n, generator=trainer.batches.gen).split(bs):
        trainer.train_step(data_mod.draw_binary(trainer.batches.train_x[idx], trainer.batches.gen))
    return time.perf_counter() - start


def matmul_floor(batch_size: int, n_images: int) -> float:
    """Seconds for one epoch of this model's matmuls alone: forward, dX and dW per layer."""
    torch.manual_seed(0)
    mats = [(torch.randn(batch_size, i), torch.randn(i, o), torch.randn(batch_size, o)) for i, o in LAYERS]
    steps = -(-n_images // batch_size)
    start = time.perf_counter()
    for _ in range(steps):
        for j, (x, w, g) in enumerate(mats):
            x @ w  # forward
            x.T @ g  # weight gradient
            if j != 0:  # no gradient for the input images
                g @ w.T
    return time.perf_counter() - start


def rate(images: int, seconds: list[float]) -> float:
    return images / statistics.median(seconds)


def bench_training(data, pythae, rounds: int, batch_sizes: list[int], compiled: list[bool]) -> tuple[list[dict], torch.nn.Module]:
    """Training rows, and reparam's model as trained at the first batch size (for the IS rows)."""
    rows, trained = [], None
    n = len(data.train)
    for bs in batch_sizes:
        trainers = {c: reparam_trainer(data, bs, c) for c in compiled}
        for t in trainers.values():  # warm-up (and compilation) outside the timing
            t.batches.train_x, full = t.batches.train_x[: 10 * bs], t.batches.train_x
            reparam_epoch(t)
            t.batches.train_x = full
        times: dict[str, list[float]] = {}
        for _ in range(rounds):  # alternate, so both see the same background load
            for c, t in trainers.items():
                times.setdefault(f"reparam{' + compile' if c else ''}", []).append(reparam_epoch(t))
            if pythae:
                times.setdefault("Pythae 0.1.2", []).append(pythae.call("train_epoch", batch_size=bs)["seconds"])
            times.setdefault("matmuls alone", []).append(matmul_floor(bs, n))
        rows += [{"batch": bs, "who": who, "images_per_s": rate(n, s), "seconds": s} for who, s in times.items()]
        if trained is None:
            trained = trainers[False].model
    return rows, trained


def decoder_floor(model, rows: int, total: int) -> float:
    """Seconds for the decoder's matrix multiplications alone on ``total`` latent samples."""
    torch.manual_seed(0)
    mats = [m.weight.detach().T.contiguous() for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    h0 = torch.randn(rows, mats[0].shape[0])
    start = time.perf_counter()
    for _ in range(-(-total // rows)):
        h = h0
        for w in mats:
            h = h @ w
    return time.perf_counter() - start


def bench_eval(model, x, pythae, rounds: int, k: int, batch_sizes: list[int]) -> tuple[list[dict], dict]:
    """IS throughput rows, and the bf16-minus-fp32 difference of log p(x) on the same draws."""
    model = model.eval()
    n = len(x)
    evaluate.log_likelihood(model, x[:2], k)  # warm-up
    times: dict[str, list[float]] = {}
    out: dict[str, torch.Tensor] = {}
    for _ in range(rounds):
        for precision in ("fp32", "bf16"):
            start = time.perf_counter()
            out[precision] = evaluate.log_likelihood(model, x, k, precision=precision)[0].double()
            times.setdefault(f"reparam, precision={precision}", []).append(time.perf_counter() - start)
        for bs in batch_sizes if pythae else []:
            res = pythae.call("nll", n=n, k=k, batch_size=bs)
            times.setdefault(f"Pythae 0.1.2 get_nll, batch_size={bs}", []).append(res["seconds"])
        rows = max(1, evaluate.MAX_ELEMENTS // math.prod(model.x_shape))
        times.setdefault("decoder matmuls alone (fp32)", []).append(decoder_floor(model, rows, n * k))
    diff = out["bf16"] - out["fp32"]
    bias = {"mean": float(diff.mean()), "se": float(diff.std() / math.sqrt(n)), "max": float(diff.abs().max()),
            "nll": float(-out["fp32"].mean()), "nll_se": float(out["fp32"].std() / math.sqrt(n))}  # fmt: skip
    return [{"who": who, "rate": rate(n * k, s), "seconds": s} for who, s in times.items()], bias


def training_table(rows: list[dict]) -> str:
    lines = ["| batch | code | images/s | epoch s (median) | x reparam's time | matmul share |", "|---|---|---|---|---|---|"]
    for bs in sorted({r["batch"] for r in rows}):
        group = {r["who"]: r for r in rows if r["batch"] == bs}
        ref, floor = group["reparam"]["images_per_s"], group["matmuls alone"]["images_per_s"]
        for who, r in group.items():
            share = "" if who == "matmuls alone" else f"{r['images_per_s'] / floor:.0%}"
            lines.append(
                f"| {bs} | {who} | {r['images_per_s']:,.0f} | {statistics.median(r['seconds']):.2f} "
                f"| {ref / r['images_per_s']:.2f} | {share} |"
            )
    return "\n".join(lines)


def eval_table(rows: list[dict], n: int, k: int) -> str:
    ref, ref16 = rows[0]["rate"], rows[1]["rate"]
    lines = [
        f"| code | images x samples / s (n={n}, K={k}) | s (median) | reparam fp32's speed-up | reparam bf16's speed-up |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['who']} | {r['rate']:,.0f} | {statistics.median(r['seconds']):.2f} "
            f"| {ref / r['rate']:.2f}x | {ref16 / r['rate']:.2f}x |"
        )
    return "\n".join(lines)


def is_section(eval_rows: list[dict], bias: dict, a, trained: str) -> str:
    return f"""**IS log-likelihood** on the first {a.eval_n} binarized test images, K = {a.k} importance samples
each, with {trained} (reparam: `evaluate.log_likelihood`, each image encoded once, chunks of at
most 2**21 decoded pixels; Pythae: `VAE.get_nll(data, n_samples={a.k}, batch_size=B)`, which
encodes every sample's copy of the image). "decoder matmuls alone" is the fp32 floor: the
decoder's three matrix multiplications for the same n x K latent samples, nothing else.
`precision=bf16` (`reparam eval --precision bf16`) runs those in bfloat16 under autocast;
on these draws it moved log p(x) by {bias['mean']:+.4f} ± {bias['se']:.4f} nats on average (at most
{bias['max']:.3f} for one image), against an NLL of {bias['nll']:.2f} ± {bias['nll_se']:.2f}.

{eval_table(eval_rows, a.eval_n, a.k)}
"""


def markdown(train_rows, eval_rows, bias: dict, a, load: tuple[float, float], note: str) -> str:
    flags = f"--threads {a.threads} --rounds {a.rounds} --eval-n {a.eval_n}" + (" --compile" if a.compile else "")
    if a.parts != "train,eval":
        flags += f" --parts {a.parts}"
    training = training_table(train_rows) if train_rows else "(not run: `--parts` left training out)"
    trained = "the model of the batch-100 training rows" if train_rows else "a model trained for two epochs here"
    return f"""Command: `python benchmarks/speed.py {flags}`.
Model 784-200-200-50 (tanh, Bernoulli decoder, Adam 1e-3), MNIST 60,000 training images with
dynamic binarization, {a.threads} thread(s) for both libraries, timed alternately in one run,
median of {a.rounds} rounds. {note} 1-minute load average {load[0]:.2f} before, {load[1]:.2f} after
(the machine is shared; other processes ran at the same time).

**Training** (whole epochs: shuffling, batching, binarization, forward, backward, Adam). reparam:
`Trainer.train_step` on batches gathered by index from the in-memory tensor and binarized in one
vectorized draw; Pythae: its own `BaseTrainer.train_step` over a `DataLoader` of its `BaseDataset`
(binarizing each item as it is fetched, the usual way with a Dataset). "x reparam's
time" is how many times reparam's (no compile) epoch time each row takes; "matmul share" is the
time the same matrix multiplications take alone (forward, weight and input gradients of the six
layers, one epoch of steps) divided by the row's time: 100% would be the floor.

{training}

{is_section(eval_rows, bias, a, trained) if eval_rows else "(IS rows not run: `--parts` left them out)"}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--eval-n", type=int, default=200)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--batch-sizes", default="100,1000")
    p.add_argument("--compile", action="store_true", help="also time reparam with torch.compile")
    p.add_argument("--parts", default="train,eval", choices=("train,eval", "train", "eval"))
    p.add_argument("--no-pythae", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    os.environ.setdefault("REPARAM_DATA", str(common.MNIST.parent))
    data = data_mod.load(config.DataConfig(name="mnist", path=str(common.MNIST), binarize="dynamic"))
    py = None if a.no_pythae else venv_python()
    pythae = Pythae(py, a.threads) if py else None
    note = f"Pythae: torch {pythae.info['torch']}, {pythae.info['threads']} threads." if pythae else "Pythae was skipped."
    load0 = os.getloadavg()[0]
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    train_rows, eval_rows, bias = [], [], {}
    if "train" in a.parts:
        train_rows, model = bench_training(data, pythae, a.rounds, sizes, [False, True] if a.compile else [False])
    else:
        t = reparam_trainer(data, 100, False)
        for _ in range(2):
            reparam_epoch(t)
        model = t.model
    if "eval" in a.parts:
        eval_rows, bias = bench_eval(model, data.test[: a.eval_n].to(torch.float32), pythae, a.rounds, a.k, sizes)
    if pythae:
        pythae.close()
    md = markdown(train_rows, eval_rows, bias, a, (load0, os.getloadavg()[0]), note)
    partial = a.parts != "train,eval"
    common.publish("speed", md, write=not (a.no_write or partial))
    if partial:
        print("speed: a partial run (--parts) is printed only; BENCHMARKS.md keeps the last full run", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
