"""MIG, DCI, SAP and the FactorVAE score against codes whose answers are known, and each
building block against an independent computation (scikit-learn, scipy, numpy's histogram)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import mutual_info_score

from reparam.data.shapes import grid
from reparam.evaluate import disentangle as dis

SIZES = [3, 2, 4, 4, 4]
V = grid(2, 4, 4).numpy()  # every combination of the five factors: (384, 5)
N = 1200  # points drawn with replacement, a third held out
NOISE = 0.01


def codes(kind: str, v: np.ndarray, seed: int = 0) -> np.ndarray:
    """Codes (N, 10) of factor rows v (N, 5), each with its own noise: every standardized factor
    copied into its own dimension (and five idle ones), a random rotation of that, the factor x
    (column 3) split over dimensions 3 and 5, or the factor y (column 4) missing."""
    rng = np.random.default_rng(seed)
    z = (v - V.mean(0)) / V.std(0)
    copy = np.concatenate([z, np.zeros((len(z), 5))], 1) + NOISE * rng.standard_normal((len(z), 10))
    if kind == "rotated":
        q, _ = np.linalg.qr(np.random.default_rng(99).standard_normal((10, 10)))
        return copy @ q
    if kind == "split":
        copy[:, 5] = z[:, 3] + NOISE * rng.standard_normal(len(z))
    if kind == "missing":
        copy[:, 4] = NOISE * rng.standard_normal(len(z))
    return copy


@pytest.fixture(scope="module")
def scored() -> dict[str, dict]:
    """Every metric of every kind of code: MIG, DCI and SAP on N points drawn with replacement
    (fresh noise for each, DCI and SAP fit on two thirds), the FactorVAE score on the grid's codes."""
    v = V[np.random.default_rng(0).integers(0, len(V), N)]
    fit, held = slice(0, 2 * N // 3), slice(2 * N // 3, N)
    out = {}
    for kind in ("copy", "rotated", "split", "missing"):
        z, grid_z = codes(kind, v, 1), codes(kind, V, 2)
        out[kind] = {"mig": dis.mig(z, v), **dis.dci(z[fit], v[fit], z[held], v[held]), "sap": dis.sap(z[fit], v[fit], z[held], v[held]),
                     "factor_vae": dis.factor_vae(grid_z, V, SIZES, 64, 1000, np.random.default_rng(3))}  # fmt: skip
    return out


def test_a_code_that_copies_the_factors_scores_the_maximum(scored):
    """1 up to the plug-in MI's known upward bias for independent variables, (bins - 1)(L - 1) / 2N
    nats (Miller 1955), which the second-best dimension of each factor carries, over H(v_k)."""
    s = scored["copy"]
    bias = max((20 - 1) * (size - 1) / (2 * N) / math.log(size) for size in SIZES)
    assert 1 - 3 * bias < s["mig"] <= 1
    assert s["disentanglement"] > 0.99 and s["completeness"] > 0.99 and s["informativeness"] == 1.0
    assert s["sap"] > 0.99 and s["factor_vae"] == 1.0


def test_a_random_rotation_scores_low_but_for_the_factorvae_score(scored):
    """A rotation spreads every factor over every dimension: MIG and SAP fall near 0, DCI's D and C
    well below 1 (trees put a factor's importance on the few dimensions that load most on it, so
    they stay above a linear model's). The FactorVAE score does not fall: with one factor fixed, the dimension that loads most on it
    still has the least variance, so the votes stay consistent (its known blind spot)."""
    s, top = scored["rotated"], scored["copy"]
    assert s["mig"] < 0.3 and s["sap"] < 0.3 and s["disentanglement"] < 0.7 and s["completeness"] < 0.7
    assert s["informativeness"] > 0.8  # the information is all there, only not axis-aligned
    assert s["factor_vae"] > 0.9 and top["factor_vae"] == 1.0


def test_one_factor_split_over_two_dimensions_lowers_completeness_mig_and_sap(scored):
    """Factor x told by dimensions 3 and 5 alike: its completeness is 1 - H_10(p, 1 - p) with p the
    share of its importance in dimension 3; for p in [0.25, 0.75] the mean over the five factors lies
    in [(4 + 1 - log 2 / log 10) / 5, (4 + 1 - H(0.25) / log 10) / 5] = [0.940, 0.951]. Its MIG and
    SAP gaps vanish (two equally good dimensions), so MIG and SAP are 4/5 of the copy's."""
    s, top = scored["split"], scored["copy"]
    lo, hi = (5 - math.log(2) / math.log(10)) / 5, (5 - scipy_entropy([0.25, 0.75]) / math.log(10)) / 5
    assert lo - 0.005 < s["completeness"] < hi and s["disentanglement"] > 0.99
    assert abs(s["mig"] - 0.8 * top["mig"]) < 0.03 and abs(s["sap"] - 0.8 * top["sap"]) < 0.03


def test_a_missing_factor_costs_its_share_of_every_score(scored):
    """Factor y told by no dimension: a FactorVAE vote that fixes it finds no dimension of small
    variance and lands on one of the others, which belong to their own factors, so its votes are
    always wrong and the score is 4/5 (within 4 binomial standard errors of the 500 held-out
    votes); its MIG and SAP gaps vanish (4/5 of the copy's) and the classifiers cannot predict it."""
    s, top = scored["missing"], scored["copy"]
    assert abs(s["factor_vae"] - 0.8) < 4 * math.sqrt(0.8 * 0.2 / 500)
    assert abs(s["mig"] - 0.8 * top["mig"]) < 0.03 and abs(s["sap"] - 0.8 * top["sap"]) < 0.03
    assert abs(s["informativeness"] - (4 + 1 / 4) / 5) < 0.05  # y guessed among its 4 values


def test_the_pieces_agree_with_independent_computations():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 500), rng.integers(0, 7, 500)
    b[:200] = a[:200]
    assert dis.mutual_info(a, b) == pytest.approx(mutual_info_score(a, b), rel=1e-12)
    w = rng.random((6, 4))
    assert np.allclose(dis.entropy(w, 4, axis=1), scipy_entropy(w.T, base=4))
    z = rng.standard_normal((300, 3))
    by_histogram = np.stack([np.digitize(c, np.histogram(c, 20)[1][:-1]) - 1 for c in z.T], 1)  # disentanglement_lib's way
    assert np.array_equal(dis.discretize(z, 20), by_histogram)
    assert dis.dci_scores(np.eye(4)) == pytest.approx((1.0, 1.0)) and dis.dci_scores(np.ones((4, 4))) == pytest.approx((0.0, 0.0), abs=1e-12)


def test_repetitions_give_a_standard_error_and_bad_options_one_line():
    z = codes("copy", V)
    out = dis.score_codes(lambda r: z, V, SIZES, dis.Options(repetitions=3, points=90, votes=30))
    assert len(out["mig_draws"]) == 3 and out["mig_se"] == pytest.approx(np.std(out["mig_draws"], ddof=1) / math.sqrt(3))
    from reparam.errors import ReparamError

    with pytest.raises(ReparamError, match="--dci must be one of forest, gbt"):
        dis.Options(dci="lasso").check()
    with pytest.raises(ReparamError, match="--repetitions must be >= 2"):
        dis.Options(repetitions=1).check()


SMALL = ["data.name=shapes", "data.canvas=16", "data.scales=2", "data.rotations=2", "data.positions=4"]
FAST = ["--repetitions", "2", "--points", "90", "--votes", "30"]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A run on 192 generated 16 x 16 shapes, one epoch: shared, read-only."""
    from reparam.train import train
    from tests.conftest import tiny_config

    return train(tiny_config(*SMALL, "train.epochs=1", "train.eval_k=0"), tmp_path_factory.mktemp("run") / "shapes")


def test_eval_disentanglement_prints_every_metric_and_its_options(shapes_run, capsys):
    from tests.helpers import in_process

    proc = in_process(capsys, "eval", str(shapes_run), "--disentanglement", "--json", *FAST, "--sap", "discrete", "--codes", "sample")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["images"] == 192 and out["factors"] == {"shape": 3, "scale": 2, "rotation": 2, "x": 4, "y": 4} and out["latent_dim"] == 4
    assert out["options"] == {**asdict(dis.Options()), "repetitions": 2, "points": 90, "votes": 30, "sap": "discrete", "codes": "sample"}
    for key in dis.METRICS:
        assert 0 <= out[key] <= 1 and len(out[f"{key}_draws"]) == 2 and out[f"{key}_se"] >= 0
    text = dis.describe(out)  # what the command prints without --json
    assert "one draw z ~ q(z|x)" in text and "20 equal-width bins" in text and "LinearSVC" in text and f"{out['mig']:.3f} ± " in text


def test_eval_disentanglement_refuses_what_it_cannot_score(shapes_run, tiny_run, capsys):
    from tests.helpers import assert_user_error, in_process

    assert_user_error(in_process(capsys, "eval", str(tiny_run), "--disentanglement"), "carry no known factors")
    assert_user_error(in_process(capsys, "eval", str(shapes_run), "--bins", "10"), "--bins applies to --disentanglement only")
    assert_user_error(in_process(capsys, "eval", str(shapes_run), "--disentanglement", "--k", "5"), "--k and --precision")
    assert_user_error(in_process(capsys, "eval", str(shapes_run), "--disentanglement", "--points", "3"), "--points must be >= 30")
