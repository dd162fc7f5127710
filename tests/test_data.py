"""Data sources: digits, Keras-layout and single arrays, MNIST lookup and its download."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from reparam import config, data
from reparam.errors import DataError


def cfg_for(*overrides):
    return config.load(None, list(overrides)).data


def test_digits_default_split_is_fixed_and_in_unit_range():
    a, b = data.load(cfg_for("data.binarize=none")), data.load(cfg_for("data.binarize=none"))
    assert a.train.shape == (1500, 8, 8) and a.test.shape == (297, 8, 8)
    assert torch.equal(a.test, b.test) and torch.equal(a.test_labels, b.test_labels)
    assert 0.0 <= float(a.train.min()) and float(a.train.max()) <= 1.0


def test_dynamic_binarization_fixes_the_test_set_and_keeps_train_grey():
    d = data.load(cfg_for("data.binarize=dynamic"))
    assert set(d.test.unique().tolist()) <= {0.0, 1.0}
    assert len(d.train.unique()) > 2
    assert torch.equal(d.test, data.load(cfg_for("data.binarize=dynamic")).test)


def test_the_training_draw_is_bernoulli_of_the_grey_levels():
    """draw_binary: values in {0, 1}, 0 and 1 kept, and each pixel's mean over draws within
    4 standard errors of its grey level (sqrt(p (1 - p) / n)), for a fixed generator."""
    p = torch.tensor([0.0, 0.02, 0.25, 0.5, 0.9, 1.0]).repeat(4000, 1)  # 4,000 draws of six grey levels
    draws = data.draw_binary(p, torch.Generator().manual_seed(0))
    assert draws.dtype == p.dtype and set(draws.unique().tolist()) <= {0.0, 1.0}
    mean, grey = draws.double().mean(0), p[0].double()
    se = torch.sqrt(grey * (1 - grey) / len(p))
    assert mean[0] == 0 and mean[-1] == 1
    assert torch.all((mean - grey).abs()[1:-1] <= 4 * se[1:-1]), (mean, grey, se)
    again = data.draw_binary(p, torch.Generator().manual_seed(0))
    assert torch.equal(draws, again) and not torch.equal(draws, data.draw_binary(p, torch.Generator().manual_seed(1)))


def test_static_binarization_binarizes_both():
    d = data.load(cfg_for("data.binarize=static"))
    assert set(d.train.unique().tolist()) <= {0.0, 1.0}


def keras_npz(path, n_train=20, n_test=10, shape=(6, 6)):
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train),
        x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test),
    )
    return path


def test_keras_layout_npz_scaled_from_uint8(tmp_path):
    """The training images stay uint8 levels (a quarter of the bytes), the test set is float32;
    per batch the levels become the very floats ``to_unit`` gives (the conversion at load before)."""
    path = keras_npz(tmp_path / "k.npz")
    d = data.load(cfg_for("data.name=file", f"data.path={path}", "data.binarize=none"))
    assert d.train.shape == (20, 6, 6) and d.test.shape == (10, 6, 6) and d.test_labels.shape == (10,)
    assert d.train.dtype == torch.uint8 and d.test.dtype == torch.float32
    with np.load(path) as f:
        assert torch.equal(d.train, torch.from_numpy(f["x_train"])) and torch.equal(d.test, data.to_unit(f["x_test"], "x"))
        assert torch.equal(data.unit(d.train), data.to_unit(f["x_train"], "x"))


def test_levels_held_small_convert_to_to_units_floats():
    """Integers 0..255 of any dtype are held as uint8, booleans as booleans, other floats as
    float32; ``unit`` of each is ``to_unit`` of the array, bit for bit, and ``levels`` the values present."""
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 256, (3, 4, 4))
    for array, dtype in ((ints, torch.uint8), (ints.astype(np.uint8), torch.uint8), (ints > 127, torch.bool),
                         (ints.astype(np.float32) / 255, torch.float32), (ints.astype(np.int16) % 2, torch.float32)):  # fmt: skip
        held = data.compact(array, "x")
        assert held.dtype == dtype and torch.equal(data.unit(held), data.to_unit(array, "x"))
        assert torch.equal(torch.unique(data.levels(held)), torch.unique(data.to_unit(array, "x")))
    assert torch.equal(data.LEVELS, torch.from_numpy(np.arange(256, dtype=np.float32) / np.float32(255)))


def test_uint8_grey_levels_become_the_correctly_rounded_float32_quotients():
    levels = np.arange(256, dtype=np.uint8)
    images = np.broadcast_to(levels[None, :, None], (2, 256, 3))[:, ::-1]  # not contiguous, as a sliced array may be
    got = data.to_unit(images, "x")
    exact = np.array([np.float32(float(v) / 255.0) for v in levels[::-1]])  # float64 quotient rounded once to float32
    assert got.dtype == torch.float32 and got.is_contiguous()
    assert np.array_equal(got[0, :, 0].numpy(), exact) and np.array_equal(got[1, :, 2].numpy(), exact)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_single_array_is_split(tmp_path, suffix):
    x = np.random.default_rng(0).random((40, 5, 5)).astype(np.float32)
    path = tmp_path / f"a{suffix}"
    np.save(path, x) if suffix == ".npy" else np.savez(path, images=x)
    d = data.load(cfg_for("data.name=file", f"data.path={path}", "data.binarize=none", "data.test_fraction=0.25"))
    assert (len(d.train), len(d.test)) == (30, 10)
    assert torch.allclose(torch.sort(torch.cat([d.train, d.test]).flatten())[0], torch.sort(torch.from_numpy(x).flatten())[0])


def bad_files(tmp_path):
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(keras_npz(tmp_path / "full.npz").read_bytes()[:200])
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "nan.npy", np.full((4, 3, 3), np.nan, np.float32))
    np.save(tmp_path / "neg.npy", -np.ones((4, 3, 3), np.float32))
    np.save(tmp_path / "big.npy", np.full((4, 3, 3), 300.0, np.float32))
    np.save(tmp_path / "zero.npy", np.zeros((0, 3, 3), np.float32))
    np.save(tmp_path / "flat.npy", np.zeros(5, np.float32))
    np.save(tmp_path / "text.npy", np.array([["a", "b"], ["c", "d"]]))
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 2, 2)), b=np.zeros((3, 2, 2)))
    np.savez(tmp_path / "mismatch.npz", x_train=np.zeros((3, 2, 2)), x_test=np.zeros((3, 4, 4)))
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    return {
        "trunc.npz": "cannot read",
        "empty.npy": "cannot read",
        "nan.npy": "NaN",
        "neg.npy": "expected [0, 1] or 0..255",
        "big.npy": "expected [0, 1] or 0..255",
        "zero.npy": "N >= 1",
        "flat.npy": "expected (N, H, W)",
        "text.npy": "not numbers",
        "two.npz": "expected x_train and x_test",
        "mismatch.npz": "the training images are",
        "junk.npz": "cannot read",
        "missing.npy": "does not exist",
    }


def test_bad_data_files_raise_one_line(tmp_path):
    for name, needle in bad_files(tmp_path).items():
        with pytest.raises(DataError) as e:
            data.load(cfg_for("data.name=file", f"data.path={tmp_path / name}"))
        assert needle in str(e.value), (name, str(e.value))
        assert "\n" not in str(e.value)


def test_mnist_found_through_reparam_data(tmp_path, monkeypatch):
    keras_npz(tmp_path / "mnist.npz")
    monkeypatch.setenv("REPARAM_DATA", str(tmp_path))
    assert data.load(cfg_for("data.name=mnist")).train.shape == (20, 6, 6)
    monkeypatch.setenv("REPARAM_DATA", str(tmp_path / "nowhere"))
    assert data.load(cfg_for("data.name=mnist", f"data.path={tmp_path}")).test.shape == (10, 6, 6)
    with pytest.raises(DataError, match="MNIST not found"):
        data.load(cfg_for("data.name=mnist"))


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_checks_the_checksum(local_server, tmp_path, monkeypatch):
    root, url = local_server
    payload = keras_npz(root / "mnist.npz").read_bytes()
    good = hashlib.sha256(payload).hexdigest()
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPARAM_DATA", str(cache))
    with pytest.raises(DataError, match="expected 00"):
        data.load(cfg_for("data.name=mnist", "data.download=true", f"data.url={url}/mnist.npz", f"data.sha256={'0' * 64}"))
    assert not cache.exists() or not list(cache.iterdir())  # nothing saved, no temporary left
    d = data.load(cfg_for("data.name=mnist", "data.download=true", f"data.url={url}/mnist.npz", f"data.sha256={good}"))
    assert d.train.shape == (20, 6, 6) and (cache / "mnist.npz").read_bytes() == payload
    with pytest.raises(DataError, match="cannot download"):
        data.download(f"{url}/missing.npz", tmp_path / "x.npz", good)


def test_download_of_the_real_mnist_file(local_server, tmp_path, mnist_path):
    root, url = local_server
    (root / "mnist.npz").symlink_to(mnist_path)
    digest = data.sha256(mnist_path)
    got = data.download(f"{url}/mnist.npz", tmp_path / "mnist.npz", digest)
    d = data.load_arrays(got, 0.1)
    assert d.train.shape == (60000, 28, 28) and d.test.shape == (10000, 28, 28)
    assert d.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def png_folder(folder, n=4, shape=(6, 6)):
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full(shape, 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


def test_the_source_is_inferred_from_data_path(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((10, 4, 4)).astype(np.float32))
    (tmp_path / "m").mkdir()
    keras_npz(tmp_path / "m" / "mnist.npz")
    cases = {"": "digits", str(tmp_path / "x.npy"): "file", str(png_folder(tmp_path / "imgs")): "folder", str(tmp_path / "m"): "mnist"}
    for path, name in cases.items():
        cfg = cfg_for(f"data.path={path!r}")
        assert cfg.name == name, path
        assert cfg_for(f"data.name={name}", f"data.path={path!r}") == cfg  # what config.json holds
    assert data.load(cfg_for(f"data.path={tmp_path / 'x.npy'}", "data.binarize=none")).train.shape[1:] == (4, 4)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["data.name=digits", "data.path=X"], "data.path has no effect on the bundled digits"),
        (["data.path=NOPE"], "does not exist"),
        (["data.path=TXT"], "an .npz/.npy file nor a folder of images"),
        (["data.download=true"], "data.download applies to data.name=mnist only"),
        (["data.name=file", "data.path=X", "data.download=true"], "data.download applies to data.name=mnist only"),
        (["data.name=mnist", "data.url=http://example.org/m.npz"], "data.url and data.sha256 apply only with"),
        (["data.sha256=" + "0" * 64], "data.url and data.sha256 apply only with"),
        (["data.test_fraction=0.5"], "data.test_fraction applies to data without a test split"),
        (["data.name=mnist", "data.test_fraction=0.5"], "data.test_fraction applies to data without a test split"),
    ],
)
def test_a_key_without_effect_is_refused(overrides, needle, tmp_path):
    from reparam.errors import ConfigError

    np.save(tmp_path / "x.npy", np.zeros((4, 3, 3), np.float32))
    (tmp_path / "notes.txt").write_text("hello")
    subs = {"X": tmp_path / "x.npy", "NOPE": tmp_path / "nope", "TXT": tmp_path / "notes.txt"}
    overrides = [o.split("=")[0] + "=" + str(subs.get(o.split("=", 1)[1], o.split("=", 1)[1])) for o in overrides]
    with pytest.raises(ConfigError, match=needle):
        cfg_for(*overrides)


def not_images(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "5d.npy": (rng.random((4, 2, 8, 8, 3)), "has shape (4, 2, 8, 8, 3); expected (N, H, W) grey"),
        "complex.npy": (rng.random((4, 8, 8)) + 1j, "holds complex values"),
        "rows.npy": (rng.random((20, 64)), "one vector per row, not images"),
        "hollow.npy": (rng.random((4, 0, 8)), "no empty axis"),
        "two.npy": (rng.random((4, 8, 8, 2)), "has 2 channels per pixel"),
        "binary.npy": ((rng.random((4, 8, 8)) > 0.5).astype(np.uint8), "uint8 holding only 0 and 1"),
    }
    for name, (x, _) in arrays.items():
        np.save(tmp_path / name, x)
    return {name: needle for name, (_, needle) in arrays.items()}


def test_arrays_that_are_not_images_are_refused_up_front(tmp_path):
    for name, needle in not_images(tmp_path).items():
        with pytest.raises(DataError) as e:
            data.load(cfg_for(f"data.path={tmp_path / name}"))
        assert needle in str(e.value) and "\n" not in str(e.value), (name, str(e.value))


def test_a_5d_array_ends_in_one_line_and_writes_nothing(tmp_path, capsys):
    from tests.conftest import TINY
    from tests.helpers import assert_user_error, in_process

    not_images(tmp_path)
    for name in ("5d.npy", "complex.npy"):
        out = tmp_path / f"run-{name}"
        assert_user_error(in_process(capsys, "train", *TINY, f"data.path={tmp_path / name}", "--out", str(out)), str(tmp_path / name))
        assert not out.exists()


def test_boolean_and_rgba_arrays_are_images(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "bits.npy", rng.random((10, 4, 4)) > 0.5)
    np.save(tmp_path / "rgba.npy", rng.random((10, 4, 4, 4)).astype(np.float32))
    bits = data.load(cfg_for(f"data.path={tmp_path / 'bits.npy'}", "data.binarize=none"))
    assert set(torch.cat([bits.train, bits.test]).unique().tolist()) == {0.0, 1.0}
    assert data.load(cfg_for(f"data.path={tmp_path / 'rgba.npy'}", "data.binarize=none")).x_shape == (4, 4, 4)


def test_a_file_with_its_own_split_refuses_a_test_fraction_and_file_refuses_a_folder(tmp_path):
    path = keras_npz(tmp_path / "k.npz")
    with pytest.raises(DataError, match="carries its own test split"):
        data.load(cfg_for(f"data.path={path}", "data.test_fraction=0.3"))
    with pytest.raises(DataError, match="is a folder; data.name=file takes an .npz or .npy file"):
        data.load(cfg_for("data.name=file", f"data.path={tmp_path}"))


@dataclasses.dataclass
class SourceRow:
    """A registered source's test row: ``make(folder)`` writes what it reads and returns
    ``data.path`` ("" for none), which ``data.name=auto`` must resolve to the source (unless
    ``by_name``: a source named only, as generated data are); the data loaded with ``settings``
    have ``sizes`` (train, test), ``x_shape`` and labels or none."""

    make: Callable[[Path], str]
    sizes: tuple[int, int]
    x_shape: tuple[int, ...]
    labelled: bool
    given: Callable[[], object] | None = None  # a source of data given in Python: what train(..., data=) takes, no path
    by_name: bool = False
    settings: tuple[str, ...] = ()


def mnist_folder(folder: Path) -> str:
    folder.mkdir()
    return str(keras_npz(folder / "mnist.npz").parent)


def small_csv(folder: Path) -> str:
    rows = "\n".join(f"{i % 7 * 0.5},{i % 3}" for i in range(20))
    (folder / "t.csv").write_text(f"a,b\n{rows}\n")
    return str(folder / "t.csv")


def grey_npy(folder: Path) -> str:
    np.save(folder / "x.npy", np.random.default_rng(0).random((20, 4, 4)).astype(np.float32))
    return str(folder / "x.npy")


SOURCE_ROWS = {
    "digits": SourceRow(lambda folder: "", (1500, 297), (8, 8), True),
    "mnist": SourceRow(lambda folder: mnist_folder(folder / "m"), (20, 10), (6, 6), True),
    "file": SourceRow(grey_npy, (17, 3), (4, 4), False),
    "folder": SourceRow(lambda folder: str(png_folder(folder / "imgs", n=6)), (5, 1), (6, 6), False),
    "table": SourceRow(small_csv, (17, 3), (2,), False),
    "hf": SourceRow(lambda folder: str(saved_dataset(folder / "hf")), (40, 10), (8, 8), True),
    "python": SourceRow(lambda folder: "", (17, 3), (4, 4), False, given=lambda: np.random.default_rng(0).random((20, 4, 4))),
    "shapes": SourceRow(lambda folder: "", (163, 29), (16, 16), False, by_name=True, settings=("data.canvas=16", "data.scales=2", "data.rotations=2", "data.positions=4")),
}


def saved_dataset(folder: Path) -> Path:
    pytest.importorskip("datasets")
    from tests.test_own_data import save_dataset

    return save_dataset(folder)


def test_every_registered_source_has_a_row():
    assert list(data.SOURCES) == list(SOURCE_ROWS)  # also the order data.name's messages list them in


@pytest.mark.parametrize("name", SOURCE_ROWS)
def test_a_source_is_read_by_its_name_and_chosen_by_its_path(name, tmp_path):
    row = SOURCE_ROWS[name]
    if row.given is not None:  # chosen by train(..., data=), never by a path
        d = data.python.given(row.given(), cfg_for(f"data.name={name}", "data.binarize=none"))
        assert (len(d.train), len(d.test)) == row.sizes and d.x_shape == row.x_shape
        return
    path = row.make(tmp_path)
    named = cfg_for(f"data.name={name}", *([f"data.path={path!r}"] if path else []), "data.binarize=none", *row.settings)
    cfg = named if row.by_name else cfg_for(f"data.path={path!r}", "data.binarize=none", *row.settings)
    assert cfg.name == name and named == cfg
    d = data.load(cfg)
    assert (len(d.train), len(d.test)) == row.sizes and d.x_shape == row.x_shape
    assert (d.classes is not None) == row.labelled == (d.train_labels is not None)


def test_shapes_images_show_their_factors():
    """Independent checks of the drawing, from geometry alone: a square drawn a quarter turn on
    (two of 8 rotations) and an ellipse a half turn on are the same image (their symmetries); a
    square's or an ellipse's pixels are centred on its position, which moves with x and y alone;
    the area grows with the scale."""
    from reparam.data import shapes

    x, f = shapes.generate(32, 2, 8, 4)  # (384, 32, 32), (384, 5)
    key = lambda s, r: f[(f[:, 0] == s) & (f[:, 2] == r)]  # noqa: E731
    for shape, turn in ((0, 2), (1, 4)):
        for r in range(8 - turn):
            a, b = x[(f[:, 0] == shape) & (f[:, 2] == r)], x[(f[:, 0] == shape) & (f[:, 2] == r + turn)]
            assert torch.equal(key(shape, r)[:, [1, 3, 4]], key(shape, r + turn)[:, [1, 3, 4]])
            assert (a != b).float().mean() < 0.002  # pixels on the outline, where rounding decides
    symmetric = x[f[:, 0] < 2]
    p = torch.arange(32) + 0.5
    cx = (symmetric.sum(1) * p).sum(1) / symmetric.sum((1, 2))
    cy = (symmetric.sum(2) * p).sum(1) / symmetric.sum((1, 2))
    for c, col in ((cx, 3), (cy, 4)):
        v = f[f[:, 0] < 2][:, col]
        means = torch.stack([c[v == i].mean() for i in range(4)])
        assert torch.all(means.diff() > 3) and max(float((c[v == i] - means[i]).abs().max()) for i in range(4)) < 0.5
    area = x.sum((1, 2))
    for shape in range(3):
        assert float(area[(f[:, 0] == shape) & (f[:, 1] == 1)].min()) > float(area[(f[:, 0] == shape) & (f[:, 1] == 0)].max())


def test_shapes_are_the_same_every_time_and_split_by_test_fraction():
    small = ("data.name=shapes", "data.canvas=16", "data.scales=2", "data.rotations=2", "data.positions=4", "data.binarize=none")
    a, b = data.load(cfg_for(*small)), data.load(cfg_for(*small, "data.test_fraction=0.5"))
    assert (len(a.train), len(a.test), len(b.train), len(b.test)) == (163, 29, 96, 96)
    assert a.factors is not None and a.factors.names == ["shape", "scale", "rotation", "x", "y"] and a.factors.sizes == [3, 2, 2, 4, 4]
    assert torch.equal(a.test, data.load(cfg_for(*small)).test) and torch.equal(a.factors.test, data.load(cfg_for(*small)).factors.test)
    everything = torch.cat([a.factors.train, a.factors.test])
    assert len(torch.unique(everything, dim=0)) == 192 and set(torch.cat([a.train, a.test]).unique().tolist()) == {0.0, 1.0}
    held = data.load(cfg_for(*small, "data.validation=40"))  # the factors follow their images into the validation set
    drawn = dict(zip(map(tuple, a.factors.train.tolist() + a.factors.test.tolist()), torch.cat([a.train, a.test])))
    for x, f in ((held.train, held.factors.train), (held.valid, held.factors.valid)):
        assert len(x) == len(f) and all(torch.equal(image, drawn[tuple(k)]) for image, k in zip(x, f.tolist()))
    assert (len(held.valid), len(held.train)) == (40, 123)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["data.name=shapes", "data.canvas=8"], "data.canvas must be >= 16"),
        (["data.name=shapes", "data.rotations=1"], "data.rotations must be >= 2"),
        (["data.name=shapes", "data.path=x.npy"], "data.path has no effect on data.name=shapes"),
        (["data.name=shapes", "data.canvas=256", "data.positions=64"], "use fewer scales, rotations or positions"),
        (["data.positions=4"], "data.positions applies to data.name=shapes only, not digits"),
    ],
)
def test_shapes_keys_are_checked(overrides, needle):
    from reparam.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        cfg_for(*overrides)
