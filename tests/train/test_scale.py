"""Scale: torchrun data parallelism, colour data, devices and precision, bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from reparam import checkpoint, config, data, devices, distributed, model, runs
from reparam.errors import ConfigError, DataError
from reparam.train import Trainer
from tests.helpers import python

# 40 random 8x8 grey images: 34 train, 6 test; batch 16 -> 3 steps per epoch (the last of 2).
DDP_ARGS = ["model.arch=conv", "model.channels=[4,8]", "model.hidden=[16]", "latent.dim=3", "train.batch_size=16",
            "train.eval_k=4", "train.report=false", "train.progress=false", "train.threads=1",
            "train.checkpoint_every=1", "train.keep_checkpoints=20", "data.name=file"]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return python("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "reparam", "train", *args,
                   env={"OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def grey_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("grey") / "grey.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8))
    return path


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, grey_file) -> Path:
    """Two processes, two epochs (6 steps), a checkpoint after every step."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = torchrun(*DDP_ARGS, f"data.path={grey_file}", "train.epochs=2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes; global batch 16" in proc.stderr
    assert proc.stdout.count(str(out)) == 1  # rank 0 alone prints the run folder
    return out


def reference_step(cfg: config.Config) -> Trainer:
    """One single-process step on the union of the two shards, with each shard's z noise drawn
    from its rank's stream (the only randomness that differs per rank)."""
    torch.manual_seed(cfg.seed)
    source = data.load(cfg.data)
    vae = model.build(cfg, source.x_shape)
    t = Trainer(cfg, vae, source, Path("/nonexistent"))
    x = t.batches.next()  # the global batch: same permutation and binarization as every rank
    total = 0.0
    for rank, shard in enumerate(torch.tensor_split(x, 2)):
        torch.manual_seed(distributed.rank_seed(cfg.seed, rank))
        bound, _ = t.objective(vae, shard, 0)
        total = total + bound.sum()
    t.opt.zero_grad()
    (-total / len(x)).backward()
    t.opt.step()
    return t


def test_two_processes_take_the_same_step_as_one_on_the_global_batch(ddp_run, grey_file):
    """After step 1, weights and Adam's first moment (0.1 x gradient) match a single-process
    step on the global batch. Tolerances: float32 sums in a different order (gloo's
    all-reduce, two partial sums) differ by ~1e-7 relative; Adam's first step moves each
    weight by lr * g / (|g| + 1e-8), so weights agree to ~1e-7 wherever |g| is well above
    that float noise (elsewhere the step's size is the noise's, so only the gradients are compared)."""
    cfg = config.load(None, [*DDP_ARGS, f"data.path={grey_file}", "train.epochs=2"])
    ref = reference_step(cfg)
    tensors, meta = checkpoint.read(ddp_run / "checkpoints" / "step-000000001.safetensors")
    assert meta["world"] == 2 and meta["step"] == 1
    names = dict(ref.model.named_parameters())
    for i, (name, p) in enumerate(names.items()):
        grad = ref.opt.state[p]["exp_avg"]  # 0.1 x gradient
        torch.testing.assert_close(tensors[f"optim.{i}.exp_avg"], grad, rtol=1e-4, atol=1e-6 * float(grad.abs().max()))
        clear = grad.abs() > 1e-4 * float(grad.abs().max())
        assert clear.float().mean() > 0.5, name
        torch.testing.assert_close(tensors[f"model.{name}"][clear], p.detach()[clear], rtol=1e-5, atol=1e-6)


def test_a_distributed_run_resumes_bit_for_bit(ddp_run, tmp_path):
    """Cut the run back to its epoch-1 checkpoint, resume on two processes: same final weights."""
    cut = tmp_path / "cut"
    shutil.copytree(ddp_run, cut)
    for path in checkpoint.list_checkpoints(cut):
        if int(path.stem.split("-")[1]) > 3:
            path.unlink()
    (cut / runs.SUMMARY).unlink()
    proc = python("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "reparam", "train",
                   "--resume", str(cut), "--quiet", env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = runs.load_tensors(ddp_run / runs.WEIGHTS), runs.load_tensors(cut / runs.WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summary = runs.read_json(cut / runs.SUMMARY)
    assert summary["processes"] == 2 and summary["steps"] == 6


def test_members_under_torchrun_train_one_after_another_each_as_alone(ddp_run, grey_file, tmp_path):
    out = tmp_path / "members"
    proc = torchrun(*DDP_ARGS, f"data.path={grey_file}", "train.epochs=2", "seed=[0,1]", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "under torchrun each member trains on every process in turn" in proc.stderr
    assert proc.stdout.count(str(out)) == 1 and "mean ± SE over 2 seeds" in proc.stdout  # rank 0 alone speaks
    a, b = runs.load_tensors(ddp_run / runs.WEIGHTS), runs.load_tensors(out / "seed-0" / runs.WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shards_cover_each_batch_once():
    for n in (1, 5, 16, 17):
        parts = [distributed.Dist(r, 3).shard(n) for r in range(3)]
        assert [i for p in parts for i in range(n)[p]] == list(range(n))
        assert parts == [slice(int(s[0]), int(s[-1]) + 1) if len(s) else p for s, p in zip(torch.tensor_split(torch.arange(n), 3), parts)]


def one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_more_processes_than_images_is_one_line(grey_file):
    env = {"WORLD_SIZE": "50", "RANK": "0", "LOCAL_RANK": "0"}
    proc = python("-m", "reparam", "train", "data.name=file", f"data.path={grey_file}", "train.report=false", env=env)
    one_line_error(proc, "50 processes but the training set holds 34 images")


def test_fp16_on_cpu_is_one_line(tmp_path):
    proc = python("-m", "reparam", "train", "train.precision=fp16", "--out", str(tmp_path / "r"))
    one_line_error(proc, "train.precision=fp16 needs a CUDA GPU")
    assert not (tmp_path / "r").exists()


def shapes_dataset(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: a coloured rectangle or disc on a coloured background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        out[i] = rng.integers(0, 256, 3)
        cy, cx, r = rng.integers(8, size - 8, 2).tolist() + [int(rng.integers(4, 8))]
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r if i % 2 else (abs(yy - cy) < r) & (abs(xx - cx) < r)
        out[i][mask] = rng.integers(0, 256, 3)
    return out


def test_conv_vae_reconstructs_coloured_shapes(tmp_path):
    """Reconstruction error on held-out images well below that of predicting the mean image."""
    from reparam.report import write_report
    from reparam.train import train

    path = tmp_path / "shapes.npz"
    np.savez(path, x_train=shapes_dataset(600), x_test=shapes_dataset(64, seed=1))
    cfg = config.load(None, ["data.name=file", f"data.path={path}", "data.binarize=none", "model.arch=conv",
                             "model.channels=[16,32]", "model.hidden=[128]", "model.activation=silu", "latent.dim=16",
                             "likelihood.name=gaussian", "likelihood.scale=0.1", "train.epochs=12", "train.batch_size=32", "train.lr=2e-3",
                             "train.eval_k=8", "train.report=false", "train.progress=false", "train.threads=1"])
    run = train(cfg, tmp_path / "run")
    html = write_report(run, seed=0)
    assert Path(html).is_file()
    vae, test = runs.load(run), data.load(cfg.data).test
    with torch.no_grad():
        recon = vae.decode_mean(vae.family.point(vae.posterior(test)))
    mse = float(((recon - test) ** 2).mean())
    baseline = float(((data.unit(data.load(cfg.data).train).mean(0) - test) ** 2).mean())
    assert recon.shape == test.shape == (64, 32, 32, 3)
    assert mse < 0.3 * baseline, (mse, baseline)


def test_image_folder_loads_and_mismatched_shapes_are_one_line(tmp_path):
    from PIL import Image

    images = shapes_dataset(6, size=20)
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / f"{i}.{'png' if i % 2 else 'jpg'}", quality=100)
    got = data.load(config.load(None, ["data.name=folder", f"data.path={tmp_path}", "data.binarize=none"]).data)
    assert got.x_shape == (20, 20, 3) and len(got.train) + len(got.test) == 6
    Image.fromarray(images[0][:4]).save(tmp_path / "odd.png")
    proc = python("-m", "reparam", "train", "data.name=folder", f"data.path={tmp_path}", "--out", str(tmp_path / "r"))
    one_line_error(proc, "differ in shape")


def test_colour_arrays_layout(tmp_path):
    grey4 = np.zeros((3, 8, 8, 1), np.uint8)
    assert data.to_unit(grey4, "x").shape == (3, 8, 8)
    with pytest.raises(DataError, match="channels-first"):
        data.to_unit(np.zeros((3, 3, 8, 8), np.uint8), "x")
    assert data.to_unit(np.zeros((3, 8, 8, 3), np.uint8), "x").shape == (3, 8, 8, 3)


def tiny_trainer(tmp_path, *overrides: str) -> Trainer:
    cfg = config.load(None, ["model.arch=conv", "model.channels=[4]", "model.hidden=[16]", "latent.dim=2",
                             "train.batch_size=32", "train.progress=false", *overrides])
    torch.manual_seed(0)
    source = data.load(cfg.data)
    return Trainer(cfg, model.build(cfg, source.x_shape), source, tmp_path)


def test_bf16_autocast_on_cpu_trains_and_keeps_float32_log_probs(tmp_path):
    t = tiny_trainer(tmp_path, "train.precision=bf16")
    with t.precision.autocast():
        assert t.model.decoder(torch.zeros(2, 2)).dtype == torch.bfloat16
        assert t.model.likelihood(torch.zeros(2, 2)).log_prob(t.batches.train_x[:2]).dtype == torch.float32
    losses = [float(t.train_step(t.batches.next())["loss"]) for _ in range(3)]
    assert np.isfinite(losses).all()


def test_fp16_grad_scaler_skips_overflowing_steps_without_counting_them_bad(tmp_path):
    """The GradScaler path on a CPU-capable scaler (config refuses fp16 on CPU; the code path is the same)."""
    t = tiny_trainer(tmp_path, "train.precision=fp16")
    assert t.precision.scaler is not None
    t.train_step(t.batches.next())  # the scaler's scale is set up at its first use
    before = [p.detach().clone() for p in t.model.parameters()]
    t.precision.scaler.update(new_scale=2.0**100)  # a huge scale: float16 gradients overflow
    out = t.train_step(t.batches.next())
    assert out is not None and t.skipped_steps == 0 and float(t.precision.scaler.get_scale()) < 2.0**100
    assert all(torch.equal(a, b) for a, b in zip(before, t.model.parameters()))  # the step was skipped
    t.precision.scaler.update(new_scale=1024.0)
    assert t.train_step(t.batches.next()) is not None
    assert not all(torch.equal(a, b) for a, b in zip(before, t.model.parameters()))
    tensors, meta = checkpoint.flatten(t.state_dict())
    assert meta["scaler"]["scale"] == float(t.precision.scaler.get_scale())


def test_channels_last_gives_the_same_numbers_and_compile_keeps_names():
    cfg = config.load(None, ["model.arch=conv", "likelihood.name=gaussian"])
    torch.manual_seed(0)
    a = model.build(cfg, (16, 16, 3))
    b = model.build(cfg, (16, 16, 3))
    b.load_state_dict(a.state_dict())
    devices.prepare(b, channels_last=True, compile=False)
    assert b.encoder.convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(4, 16, 16, 3)
    torch.testing.assert_close(a.decode_mean(a.posterior(x).mean), b.decode_mean(b.posterior(x).mean), rtol=1e-4, atol=1e-5)
    names = list(a.state_dict())
    devices.prepare(a, channels_last=False, compile=True)  # compiles lazily, at the first call
    assert a.encoder._compiled_call_impl is not None and list(a.state_dict()) == names


def test_device_and_precision_checks():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        devices.check_precision("fp16", torch.device("cpu"))
    devices.check_precision("bf16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            devices.resolve_device("cuda")
    assert devices.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
