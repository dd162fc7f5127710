"""``reparam encode``: q(z|x)'s moments and draws, checked against the encoder's raw numbers."""

from __future__ import annotations

import numpy as np
import torch

from reparam import runs
from reparam.numerics import LOGVAR_MAX, LOGVAR_MIN
from tests.helpers import assert_user_error, in_process


def test_encode_writes_the_posteriors_moments_and_draws(tiny_run, tmp_path, capsys):
    out = tmp_path / "z.npz"
    assert in_process(capsys, "encode", str(tiny_run), "test", "--out", str(out), "--draws", "400").returncode == 0
    z = np.load(out)
    model = runs.load(tiny_run)
    source = runs.load_data(tiny_run, model.config)
    d = model.latent_dim
    with torch.no_grad():  # the Gaussian's layout from the raw numbers: loc, then logvar
        raw = model.encoder(source.test).numpy()
    loc, scale = raw[:, :d], np.exp(0.5 * np.clip(raw[:, d:], LOGVAR_MIN, LOGVAR_MAX))
    np.testing.assert_allclose(z["mean"], loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z["point"], loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z["stddev"], scale, rtol=1e-5, atol=1e-6)
    assert z["draws"].shape == (400, len(source.test), d) and np.array_equal(z["labels"], source.test_labels.numpy())
    se = scale / np.sqrt(400)  # each example's sample mean of 400 draws
    assert np.abs(z["draws"].mean(0) - loc).max() < 5 * se.max()
    np.testing.assert_allclose(z["draws"].std(0), scale, rtol=5 / np.sqrt(2 * 400))
    assert_user_error(in_process(capsys, "encode", str(tiny_run), "test", "--out", str(out)), "already exists")
    one = tmp_path / "z.npy"
    assert in_process(capsys, "encode", str(tiny_run), "test", "--out", str(one)).returncode == 0
    assert np.array_equal(np.load(one), z["point"])


def test_encode_reads_a_file_of_images_in_its_order(tiny_run, tmp_path, capsys):
    model = runs.load(tiny_run)
    x = runs.load_data(tiny_run, model.config).test[:10]  # binary already: the run's binarization keeps it
    np.save(tmp_path / "x.npy", x.numpy()[::-1])
    out = tmp_path / "z.npy"
    assert in_process(capsys, "encode", str(tiny_run), str(tmp_path / "x.npy"), "--out", str(out)).returncode == 0
    with torch.no_grad():
        expected = model.point(model.posterior(x.flip(0))).numpy()
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-6)
    np.save(tmp_path / "wide.npy", np.zeros((3, 8, 9), np.float32))
    assert_user_error(in_process(capsys, "encode", str(tiny_run), str(tmp_path / "wide.npy"), "--out", str(tmp_path / "w.npy")), "trained on (8, 8)")
    assert_user_error(in_process(capsys, "encode", str(tiny_run), "test", "--out", str(tmp_path / "z.txt")), "must end in .npy")
    assert not (tmp_path / "w.npy").exists()
