"""Sample quality: FID and KID against float64 references, precision / recall against brute force and
known answers, the blur against scipy, the extractor's cache, and ``reparam eval --sample-quality``."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import safetensors.torch
import scipy.linalg
import scipy.ndimage
import torch

from reparam.errors import ReparamError
from reparam.evaluate import extractor, quality
from tests.helpers import assert_user_error, in_process

STEPS = 100  # the extractor's training steps in these tests (the name carries them: its own cache entry)


def features(n: int, f: int, shift: float = 0.0, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, f, generator=g, dtype=torch.float64) * scale + shift


def test_fid_matches_the_frechet_distance_by_scipy():
    real, fake = features(300, 6), features(200, 6, shift=0.3, scale=1.4, seed=1)
    a, b = real.numpy(), fake.numpy()
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real)
    assert quality.fid(real, fake) == pytest.approx(ref, rel=1e-9)
    assert abs(quality.fid(real, real)) < 1e-9


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    real, fake = features(120, 5), features(120, 5, shift=0.5, seed=1)
    a, b = real.numpy(), fake.numpy()

    def k(x, y):
        return (x @ y.T / x.shape[1] + 1) ** 3

    m = len(a)
    off = (k(a, a).sum() - np.trace(k(a, a)) + k(b, b).sum() - np.trace(k(b, b))) / (m * (m - 1))
    ref = off - 2 * k(a, b).mean()
    mean, std = quality.kid(real, fake, subsets=1, subset_size=m)  # one subset holding both sets whole
    assert mean == pytest.approx(ref, rel=1e-9) and std == 0


def brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Precision and recall by loops over points (Kynkaanniemi et al. 2019, Algorithm 1)."""

    def radius(s: np.ndarray, i: int) -> float:
        return sorted(float(np.linalg.norm(s[i] - s[j])) for j in range(len(s)) if j != i)[k - 1]

    def inside(p: np.ndarray, s: np.ndarray) -> bool:
        return any(np.linalg.norm(p - s[j]) <= radius(s, j) for j in range(len(s)))

    return np.mean([inside(p, real) for p in fake]), np.mean([inside(p, fake) for p in real])


def test_precision_recall_match_brute_force():
    real, fake = features(40, 3), features(30, 3, shift=0.7, scale=0.6, seed=1)
    for k in (1, 3):
        p, r = quality.precision_recall(real, fake, k)
        assert (p, r) == pytest.approx(brute_force(real.numpy(), fake.numpy(), k), abs=1e-12)


def test_precision_recall_known_answers():
    real = features(200, 4)
    assert quality.precision_recall(real, real) == (1.0, 1.0)
    assert quality.precision_recall(real, real + 100) == (0.0, 0.0)
    # four far-apart modes of 100 points each; the generated set draws from two of them only
    centres = torch.eye(4, dtype=torch.float64) * 50
    modes = torch.cat([features(100, 4, seed=s) + centres[s] for s in range(4)])
    half = torch.cat([features(100, 4, seed=10 + s) + centres[s] for s in range(2)])
    p, r = quality.precision_recall(modes, half)
    assert p > 0.9 and 0.4 < r <= 0.5  # the uncovered modes' 200 real points lie outside every generated ball


def test_blur_matches_scipy():
    x = torch.rand(3, 8, 9)
    ref = scipy.ndimage.gaussian_filter(x.numpy(), sigma=(0, 1.0, 1.0), mode="mirror", truncate=3.0)
    assert torch.allclose(quality.blur(x, 1.0), torch.from_numpy(ref), atol=1e-6)
    rgb = torch.rand(2, 8, 8, 3)
    assert torch.allclose(quality.blur(rgb, 1.0)[..., 1], quality.blur(rgb[..., 1], 1.0), atol=1e-6)


def test_refusals_name_the_problem():
    table = SimpleNamespace(columns=object())
    with pytest.raises(ReparamError, match="rows of a table"):
        quality.check(table, None)
    with pytest.raises(ReparamError, match="no labels"):
        extractor.check((8, 8), None, "folder")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("cache")
        mp.setenv("REPARAM_CACHE", str(folder))
        mp.setattr(extractor, "STEPS", STEPS)
        yield folder


def test_known_answers_on_digits(cache):
    from reparam import config
    from reparam import data as data_mod

    source = data_mod.load(config.load(None, []).data)
    ext = extractor.load_or_train(source, log=lambda m: None)
    assert ext.accuracy is not None and ext.accuracy > 0.8  # 10 classes: chance is 0.1
    idx = quality.subset(len(source.test), 296, seed=0)
    a, b = source.test[idx[:148]], source.test[idx[148:]]
    same, other, blurred = quality.compare(ext, a, a), quality.compare(ext, a, b), quality.compare(ext, a, quality.blur(b, 1.0))
    assert abs(same["fid"]) < 1e-6 and same["precision"] == same["recall"] == 1.0
    assert blurred["fid"] > 2 * other["fid"] and blurred["kid"] > other["kid"] and blurred["recall"] < other["recall"] / 2


def test_eval_sample_quality(tiny_run, cache, capsys, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")  # the shared run stays as it was
    proc = in_process(capsys, "eval", str(run), "--k", "2", "--sample-quality")
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((run / quality.QUALITY_JSON).read_text())
    e = saved["extractor"]
    tensors = safetensors.torch.load_file(cache / "extractors" / f"{e['name']}.safetensors")
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(f"{name} {tensors[name].dtype} {tuple(tensors[name].shape)}\n".encode() + tensors[name].numpy().tobytes())
    assert e["sha256"] == h.hexdigest()  # the weights as the cache file holds them
    assert saved["n_test"] == saved["n_generated"] == 297 and saved["draws"] == len(saved["per_draw"]) == quality.DRAWS
    for key in ("fid", "kid", "precision", "recall"):
        vals = [d[key] for d in saved["per_draw"]]
        assert saved[key] == pytest.approx(np.mean(vals)) and saved[key + "_se"] == pytest.approx(np.std(vals, ddof=1) / np.sqrt(len(vals)))
        line = next(s for s in proc.stdout.splitlines() if s.startswith({"fid": "FID", "kid": "KID"}.get(key, key)))
        assert e["name"] in line and e["sha256"][:16] in line  # the extractor beside every number
    again = in_process(capsys, "eval", str(run), "--k", "2", "--sample-quality", "--json")
    assert again.returncode == 0 and "training" not in again.stderr  # read from the cache
    assert json.loads(again.stdout)["sample_quality"] == saved


def test_eval_sample_quality_without_torchmetrics(tiny_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)  # import fails as if it were not installed
    assert_user_error(in_process(capsys, "eval", str(tiny_run), "--sample-quality"), "pip install 'reparam[quality]'")


def test_a_conditional_run_draws_as_many_of_each_class_as_the_labels_hold(tiny_conditional_run):
    from reparam import runs

    model = runs.load(tiny_conditional_run)
    labels = torch.tensor([3, 0, 3, 9, 3])
    images = quality.generate(model, len(labels), seed=0, labels=labels)
    assert images.shape == (5, 8, 8) and 0 <= images.min() and images.max() <= 1
    torch.manual_seed(0)  # the same stream, drawn class by class: 1 of class 0, 3 of class 3, 1 of class 9
    ref = torch.cat([(v := model.given(torch.tensor(c))).decode_mean(v.sample_prior(m)) for c, m in ((0, 1), (3, 3), (9, 1))])
    assert torch.allclose(images, ref.clamp(0, 1))


def test_the_extractor_takes_any_image_shape(monkeypatch):
    monkeypatch.setattr(extractor, "STEPS", 3)
    x, y = torch.rand(40, 6, 5, 3), torch.arange(40) % 4  # colour images (N, H, W, C)
    net = extractor.train(x, y, classes=4)
    assert net(x).shape == (40, extractor.FEATURES) and net.head(net(x)).shape == (40, 4)
    assert net(x).square().mean().item() == pytest.approx(1.0, rel=1e-4)  # features in units of their RMS over training images
