"""reparam.evaluate.disentangle against disent's metric functions on the same codes and points.

    pip install --no-deps --target /tmp/disent disent==0.8.0     # outside the project's environment
    python benchmarks/disent_compare.py --disent /tmp/disent

disent (nmichlo/disent, the disentanglement_lib metrics ported to PyTorch) is not a dependency:
its own requirements bring torchvision, h5py and lightning, which its metric functions never
call, so it is read from a folder of its files alone and those modules are stood in by empty
ones. The codes are those of the known-answer tests (tests/evaluate/test_disentangle.py) on the
default shapes grid: the factors copied, rotated, one split over two dimensions, one missing.
MIG, DCI (gradient-boosted trees, both sides: disent's only classifier) and SAP (both modes)
see the very same points; the FactorVAE score runs disent's own sampler over a stand-in dataset
that serves the grid's codes by factor, so its votes are other draws and its numbers agree only
within the vote noise. disent prunes no dimension for the FactorVAE score (threshold 0, where
disentanglement_lib and reparam prune std < 0.05); the idle dimensions here have std 0.01, so
both are run: reparam's pruning, and disent's threshold through ``disentangle.PRUNE = 0``.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import sys
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ABSENT = ("h5py", "torchvision", "lightning", "pytorch_lightning")


class _Empty(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Empty modules for disent's imports that its metric functions never use."""

    def find_spec(self, name, path, target=None):
        return importlib.machinery.ModuleSpec(name, self, is_package=True) if name.split(".")[0] in ABSENT else None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = lambda attr: type(attr, (), {})  # type: ignore[method-assign]
        return module

    def exec_module(self, module):
        pass


class _Grid:
    """What disent's FactorVAE sampler asks of a dataset, over a full factorial grid's codes:
    observations are factor rows, and the representation looks their codes up."""

    def __init__(self, sizes: list[int], rng: np.random.Generator):
        self.sizes, self.rng, self.gt_data = sizes, rng, self
        self.num_factors = len(sizes)

    def sample_factors(self, n: int) -> np.ndarray:
        return np.stack([self.rng.integers(0, s, n) for s in self.sizes], 1)

    def dataset_batch_from_factors(self, factors: np.ndarray, mode: str) -> np.ndarray:
        return factors

    def dataset_sample_batch(self, n: int, mode: str) -> np.ndarray:
        return self.sample_factors(n)


def compare(kind: str, v: np.ndarray, sizes: list[int], n: int, seed: int) -> dict[str, tuple[float, float]]:
    """(reparam, disent) per metric for one kind of code."""
    from disent.metrics import _dci, _factor_vae, _mig, _sap

    from reparam.evaluate import disentangle as dis
    from tests.evaluate.test_disentangle import codes

    rng = np.random.default_rng(seed)
    pts = v[rng.integers(0, len(v), n)]
    fit, held = slice(0, 2 * n // 3), slice(2 * n // 3, n)
    z = codes(kind, pts, seed)
    zt, vt = z.T, pts.T  # disent's layout: (dimensions, points)
    ours_dci = dis.dci(z[fit], pts[fit], z[held], pts[held], "gbt", seed)
    theirs_dci = _dci._compute_dci(zt[:, fit], vt[:, fit], zt[:, held], vt[:, held])
    out = {
        "MIG": (dis.mig(z, pts), _mig._compute_mig(zt, vt)["mig.discrete_score"]),
        "DCI D (gbt)": (ours_dci["disentanglement"], theirs_dci["dci.disentanglement"]),
        "DCI C (gbt)": (ours_dci["completeness"], theirs_dci["dci.completeness"]),
        "DCI I (gbt)": (ours_dci["informativeness"], theirs_dci["dci.informativeness_test"]),
        "SAP continuous": (dis.sap(z[fit], pts[fit], z[held], pts[held], "continuous"), _sap._compute_sap(zt[:, fit], vt[:, fit], zt[:, held], vt[:, held], True)["sap.score"]),
        "SAP discrete": (dis.sap(z[fit], pts[fit], z[held], pts[held], "discrete"), _sap._compute_sap(zt[:, fit], vt[:, fit], zt[:, held], vt[:, held], False)["sap.score"]),
    }  # fmt: skip
    grid_z = codes(kind, v, seed + 1)
    lookup = lambda f: grid_z[np.ravel_multi_index(tuple(np.asarray(f).T), sizes)]  # noqa: E731
    np.random.seed(seed)  # disent's sampler draws the fixed factor from numpy's global generator
    theirs = _factor_vae.metric_factor_vae  # a Metric: called with its own keyword arguments
    got = theirs(_Grid(sizes, rng), lambda f: lookup(f), batch_size=64, num_train=2000, num_eval=1000, num_variance_estimate=5000)
    pruned = dis.factor_vae(grid_z, v, sizes, 64, 2000, rng)
    dis.PRUNE, before = 0.0, dis.PRUNE
    unpruned = dis.factor_vae(grid_z, v, sizes, 64, 2000, rng)
    dis.PRUNE = before
    out["FactorVAE (reparam: std < 0.05 pruned; disent: none)"] = (pruned, got["factor_vae.eval_accuracy"])
    out["FactorVAE (neither prunes)"] = (unpruned, got["factor_vae.eval_accuracy"])
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--disent", required=True, help="a folder holding disent's files (pip install --no-deps --target FOLDER disent)")
    ap.add_argument("--points", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    sys.meta_path.insert(0, _Empty())
    sys.path.append(a.disent)  # after the project: disent ships a package named tests too
    from tests.evaluate.test_disentangle import SIZES, V

    print(f"codes of the {len(V)}-image grid (factor sizes {SIZES}); {a.points} points drawn with replacement, a third held out\n")
    print("| code | metric | reparam | disent | difference |\n|---|---|---|---|---|")
    for kind in ("copy", "rotated", "split", "missing"):
        for metric, (ours, theirs) in compare(kind, V, SIZES, a.points, a.seed).items():
            print(f"| {kind} | {metric} | {ours:.4f} | {theirs:.4f} | {ours - theirs:+.4f} |", flush=True)


if __name__ == "__main__":
    main()
