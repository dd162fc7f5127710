"""What a latent space learned about known factors: MIG, DCI, SAP and the FactorVAE score.

Each metric scores codes z (N, D) (one per image: the posterior mean E_q[z|x], or one draw
z ~ q(z|x)) against the images' known factor values v (N, K) (integer indices, as
``reparam.data.Factors`` keeps them). Points are drawn with replacement from the images, which
for a full factorial grid (``data.name=shapes``) is drawing the factors i.i.d. and uniformly,
as the ground-truth samplers of the papers do. Every metric is computed ``repetitions``
times on independent draws (independent points, votes and, for ``codes="sample"``, codes);
the result is their mean and its standard error sd / sqrt(R), which is the spread of the
estimate for this model, not across training seeds.

**MIG** (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"). Each code
dimension is discretized into ``bins`` equal-width bins over its range; I(z_j; v_k) is the
plug-in mutual information of the discretized z_j and v_k, H(v_k) the factor's entropy, and

    MIG = 1/K sum_k (I(z_{j(1)}; v_k) - I(z_{j(2)}; v_k)) / H(v_k),

j(1), j(2) the dimensions with the largest and second-largest information about v_k.
In [0, 1]: 1 when each factor is told by one dimension alone.

**DCI** (Eastwood & Williams 2018, "A Framework for the Quantitative Evaluation of
Disentangled Representations"). A classifier per factor predicts v_k from z (``dci="gbt"``:
scikit-learn's gradient-boosted trees, as disentanglement_lib, 100 trees of depth 3 per class;
``"forest"``, the default, ``FOREST_TREES`` bagged trees grown to purity, ~5x faster);
its feature importances, each factor's normalized to sum 1, fill R (D, K). With
P_jk = R_jk / sum_k' R_jk' and rho_j = sum_k R_jk / sum R,

    D = sum_j rho_j (1 - H_K(P_j.)),   C = 1/K sum_k (1 - H_D(R_.k / sum_j R_jk)),

H_b the entropy in base b; I (informativeness) is the classifiers' mean accuracy on held-out
points. D is 1 when each dimension informs one factor, C when each factor is told by one
dimension; both 0 when spread evenly.

**SAP** (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from
Unlabeled Observations"). A score S_jk per dimension and factor: ``sap="continuous"`` the R^2
of a linear regression of v_k on z_j alone (the squared correlation), ``"discrete"`` the
held-out accuracy of a linear classifier of v_k on z_j alone (scikit-learn's LinearSVC,
C = 0.01, balanced classes, as disentanglement_lib). SAP = 1/K sum_k (S_{j(1)k} - S_{j(2)k}),
the mean gap between the two best dimensions.

**FactorVAE score** (Kim & Mnih 2018, "Disentangling by Factorising"). Each dimension is
divided by its standard deviation over the images; dimensions whose standard deviation is
below ``PRUNE`` are pruned, as disentanglement_lib does (0.05; disent prunes none): a collapsed
dimension, once scaled, varies as much as an informative one that is not fixed, and would
otherwise collect the votes of a factor no dimension tells and make them look right. A vote: a factor k at
random, a value of it at random, ``batch`` images that share that value (the other factors
at random), and the dimension of least variance among their scaled codes; it votes (j, k).
A majority-vote classifier (each dimension predicts the factor it voted for most) is fitted on
``votes`` votes and its accuracy measured on ``votes // 2`` others. In [0, 1]; chance is
about 1 / K.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ReparamError

if TYPE_CHECKING:
    import torch

FOREST_TREES = 20  # DCI forest: bagged trees, every feature considered at each split (a random subset would hand importance to idle dimensions)
PRUNE = 0.05  # FactorVAE: dimensions whose standard deviation is below this are pruned (disentanglement_lib)
ENCODE_BATCH = 1000
DCI_MODELS = ("forest", "gbt")
SAP_MODES = ("continuous", "discrete")
CODES = ("mean", "sample")


@dataclass
class Options:
    """The choices the literature varies, all stated in the result (``options``)."""

    codes: str = "mean"  # mean: E_q[z|x]; sample: one z ~ q(z|x) per image and repetition
    repetitions: int = 5  # independent draws of points, votes (and sampled codes); +- SE over them
    points: int = 2000  # MIG, DCI and SAP: points drawn per repetition (DCI and SAP hold out a third of them)
    bins: int = 20  # MIG: equal-width bins per code dimension (Chen et al. 2018 and disentanglement_lib: 20)
    dci: str = "forest"  # DCI's classifier: gbt (gradient-boosted trees) | forest (random forest)
    sap: str = "continuous"  # SAP's score: continuous (R^2 per dimension) | discrete (LinearSVC accuracy)
    batch: int = 64  # FactorVAE: images per vote (disentanglement_lib: 64)
    votes: int = 800  # FactorVAE: training votes (and votes // 2 held out) per repetition
    seed: int = 0

    def check(self) -> None:
        """One-line ReparamError for an option out of range."""
        for key, allowed in (("codes", CODES), ("dci", DCI_MODELS), ("sap", SAP_MODES)):
            if getattr(self, key) not in allowed:
                raise ReparamError(f"--{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        for key, least in (("repetitions", 2), ("points", 30), ("bins", 2), ("batch", 2), ("votes", 10)):
            if getattr(self, key) < least:
                raise ReparamError(f"--{key} must be >= {least}, got {getattr(self, key)}")


def entropy(p: np.ndarray, base: float, axis: int = 0) -> np.ndarray:
    """sum -p log_base p along ``axis`` of non-negative weights p, normalized there (0 log 0 = 0)."""
    p = p / np.maximum(p.sum(axis=axis, keepdims=True), 1e-300)
    return -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)).sum(axis=axis) / math.log(base)


def discretize(z: np.ndarray, bins: int) -> np.ndarray:
    """Each column of z (N, D) as bin indices 0..bins-1 of ``bins`` equal-width bins over its range."""
    lo, hi = z.min(0), z.max(0)
    width = np.where(hi > lo, (hi - lo) / bins, 1.0)
    return np.clip(((z - lo) / width).astype(np.int64), 0, bins - 1)


def mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in I(a; b) in nats of two integer sequences (N,), from their joint histogram."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= len(a)
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def gap(scores: np.ndarray) -> np.ndarray:
    """Per factor (column) of scores (D, K): the largest minus the second largest over dimensions."""
    top = np.sort(scores, axis=0)
    return top[-1] - top[-2] if len(top) > 1 else top[-1]


def mig(z: np.ndarray, v: np.ndarray, bins: int = 20) -> float:
    """Mutual information gap of codes z (N, D) and factor indices v (N, K) (Chen et al. 2018)."""
    zd = discretize(z, bins)
    mi = np.array([[mutual_info(zd[:, j], v[:, k]) for k in range(v.shape[1])] for j in range(z.shape[1])])  # (D, K)
    h = np.array([mutual_info(v[:, k], v[:, k]) for k in range(v.shape[1])])
    keep = h > 0  # a factor constant on these points has nothing to tell
    return float(np.mean(gap(mi)[keep] / h[keep]))


def importance(z: np.ndarray, v: np.ndarray, z_test: np.ndarray, v_test: np.ndarray, model: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """DCI's R (D, K), each column the feature importances of a classifier of v_k on z (summing
    to 1), and each classifier's held-out accuracy (K,)."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    r, acc = np.zeros((z.shape[1], v.shape[1])), np.zeros(v.shape[1])
    for k in range(v.shape[1]):
        if len(np.unique(v[:, k])) < 2:
            continue
        clf = GradientBoostingClassifier(random_state=seed) if model == "gbt" else RandomForestClassifier(n_estimators=FOREST_TREES, max_features=None, random_state=seed)
        clf.fit(z, v[:, k])
        r[:, k] = clf.feature_importances_
        acc[k] = float(np.mean(clf.predict(z_test) == v_test[:, k]))
    return r, acc


def dci_scores(r: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of an importance matrix R (D, K) >= 0 (Eastwood & Williams 2018)."""
    d_dims, k_factors = r.shape
    total = r.sum()
    if total <= 0:
        return 0.0, 0.0
    per_dim = 1 - entropy(r, k_factors, axis=1) if k_factors > 1 else np.ones(d_dims)  # (D,)
    rho = r.sum(1) / total
    per_factor = 1 - entropy(r, d_dims, axis=0) if d_dims > 1 else np.ones(k_factors)  # (K,)
    weight = r.sum(0) / total
    return float((rho * per_dim).sum()), float((weight * per_factor).sum())


def dci(z: np.ndarray, v: np.ndarray, z_test: np.ndarray, v_test: np.ndarray, model: str = "forest", seed: int = 0) -> dict[str, float]:
    """DCI disentanglement, completeness and informativeness (held-out accuracy) of codes z (N, D)."""
    r, acc = importance(z, v, z_test, v_test, model, seed)
    d, c = dci_scores(r)
    return {"disentanglement": d, "completeness": c, "informativeness": float(acc.mean())}


def sap(z: np.ndarray, v: np.ndarray, z_test: np.ndarray, v_test: np.ndarray, mode: str = "continuous") -> float:
    """Separated attribute predictability of codes z (N, D) (Kumar et al. 2018): ``continuous``
    scores R^2 of v_k on z_j on all the points; ``discrete`` the held-out accuracy of a LinearSVC."""
    d, k = z.shape[1], v.shape[1]
    s = np.zeros((d, k))
    for j in range(d):
        for f in range(k):
            s[j, f] = _r2(z[:, j], v[:, f]) if mode == "continuous" else _svc(z[:, j], v[:, f], z_test[:, j], v_test[:, f])
    return float(np.mean(gap(s)))


def _r2(a: np.ndarray, b: np.ndarray) -> float:
    va, vb = a.var(), b.var()
    if va <= 1e-12 or vb <= 1e-12:
        return 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) ** 2 / (va * vb))


def _svc(a: np.ndarray, b: np.ndarray, a_test: np.ndarray, b_test: np.ndarray) -> float:
    from sklearn.svm import LinearSVC

    if len(np.unique(b)) < 2:
        return 0.0
    clf = LinearSVC(C=0.01, class_weight="balanced").fit(a[:, None], b)
    return float(np.mean(clf.predict(a_test[:, None]) == b_test))


def factor_vae(z: np.ndarray, v: np.ndarray, sizes: list[int], batch: int, votes: int, rng: np.random.Generator) -> float:
    """FactorVAE score (Kim & Mnih 2018) of codes z (N, D) of all the images: ``votes`` training and
    ``votes // 2`` held-out votes of ``batch`` images each."""
    std = z.std(0, ddof=1)
    active = std >= PRUNE
    if not active.any():
        return 0.0
    scaled = z[:, active] / std[active]
    train, test = _votes(scaled, v, sizes, batch, votes, rng), _votes(scaled, v, sizes, batch, votes // 2, rng)
    counts = np.zeros((scaled.shape[1], len(sizes)))
    np.add.at(counts, (train[:, 0], train[:, 1]), 1)
    predict = counts.argmax(1)  # each dimension's majority factor
    return float(np.mean(predict[test[:, 0]] == test[:, 1]))


def _votes(z: np.ndarray, v: np.ndarray, sizes: list[int], batch: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n votes (n, 2): (the dimension of least variance, the factor held fixed)."""
    k = rng.integers(0, len(sizes), n)
    out = np.zeros((n, 2), dtype=np.int64)
    out[:, 1] = k
    for f in range(len(sizes)):
        at = np.flatnonzero(k == f)
        values = v[rng.integers(0, len(v), len(at)), f]  # a value, as often as the images hold it
        for value in np.unique(values):
            members = np.flatnonzero(v[:, f] == value)
            rows = at[values == value]
            picked = z[members[rng.integers(0, len(members), (len(rows), batch))]]  # (n_rows, batch, D)
            out[rows, 0] = picked.var(1, ddof=1).argmin(1)
    return out


def codes(model, x: torch.Tensor, how: str, seed: int = 0) -> np.ndarray:
    """Codes (N, D) of images x (N, *x_shape): the posterior means, or one draw each (torch's
    generator seeded with ``seed`` for them and restored after)."""
    import torch

    out = []
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for chunk in x.split(ENCODE_BATCH):
            q = model.posterior(chunk)
            if how == "sample":
                out.append(q.sample())
                continue
            try:
                out.append(q.mean)
            except NotImplementedError:
                raise ReparamError(f"this run's posterior ({type(q).__name__}) has no closed-form mean; use --codes sample") from None
    return torch.cat(out).reshape(len(x), -1).double().numpy()


def scores(z: np.ndarray, v: np.ndarray, sizes: list[int], opts: Options, rng: np.random.Generator) -> dict[str, float]:
    """One repetition: every metric on a fresh draw of points and votes."""
    idx = rng.integers(0, len(z), opts.points)
    n_fit = opts.points - opts.points // 3
    fit, held = idx[:n_fit], idx[n_fit:]
    d = dci(z[fit], v[fit], z[held], v[held], opts.dci, int(rng.integers(2**31)))
    return {
        "mig": mig(z[idx], v[idx], opts.bins),
        "dci_disentanglement": d["disentanglement"],
        "dci_completeness": d["completeness"],
        "dci_informativeness": d["informativeness"],
        "sap": sap(z[fit], v[fit], z[held], v[held], opts.sap),
        "factor_vae": factor_vae(z, v, sizes, opts.batch, opts.votes, rng),
    }


METRICS = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap", "factor_vae")


def summarize(draws: list[dict[str, float]]) -> dict:
    """Each metric's mean over the repetitions, its standard error (``_se``) and the draws (``_draws``)."""
    out: dict = {}
    for key in METRICS:
        xs = np.array([d[key] for d in draws])
        out[key], out[f"{key}_se"], out[f"{key}_draws"] = float(xs.mean()), float(xs.std(ddof=1) / math.sqrt(len(xs))), xs.tolist()
    return out


def score_codes(z_of, v: np.ndarray, sizes: list[int], opts: Options) -> dict:
    """Every metric, ``opts.repetitions`` times; ``z_of(r)`` gives repetition r's codes (N, D)."""
    opts.check()
    rng = np.random.default_rng(opts.seed)
    return summarize([scores(z_of(r), v, sizes, opts, rng) for r in range(opts.repetitions)])


def disentanglement(model, x: torch.Tensor, factors: torch.Tensor, names: list[str], sizes: list[int], opts: Options | None = None) -> dict:
    """The metrics of ``model``'s codes of images x (N, *x_shape) with factor indices (N, K):
    means ± standard errors over repetitions, and the options and data they used."""
    opts = opts or Options()
    opts.check()
    draws = [codes(model, x, opts.codes, opts.seed + r) for r in range(1 if opts.codes == "mean" else opts.repetitions)]
    out = score_codes(lambda r: draws[r % len(draws)], factors.numpy(), sizes, opts)
    out.update({"images": len(x), "factors": dict(zip(names, sizes)), "latent_dim": int(draws[0].shape[1]), "options": asdict(opts)})
    return out


def describe(out: dict) -> str:
    """The result as the lines ``reparam eval RUN --disentanglement`` prints."""
    o = out["options"]
    pm = lambda key: f"{out[key]:.3f} ± {out[key + '_se']:.3f}"  # noqa: E731
    factors = ", ".join(f"{k} {v}" for k, v in out["factors"].items())
    n_fit = o["points"] - o["points"] // 3
    held = "" if o["sap"] == "continuous" else f", {o['points'] // 3} held out"
    what = "posterior means E_q[z|x]" if o["codes"] == "mean" else "one draw z ~ q(z|x) per image and repetition"
    dci_model = "gradient-boosted trees" if o["dci"] == "gbt" else f"a random forest of {FOREST_TREES} bagged trees"
    sap_score = "R^2 of a linear fit on one dimension" if o["sap"] == "continuous" else "held-out accuracy of a LinearSVC on one dimension"
    return "\n".join([
        f"images       {out['images']} (training and test) with known factors: {factors}",
        f"codes        {what}, D = {out['latent_dim']}",
        f"MIG          {pm('mig')}   ({o['bins']} equal-width bins per dimension, {o['points']} points)",
        f"DCI          D {pm('dci_disentanglement')}, C {pm('dci_completeness')}, I {pm('dci_informativeness')}",
        f"             ({dci_model} per factor on {n_fit} points; I: accuracy on {o['points'] // 3} held-out points)",
        f"SAP          {pm('sap')}   ({sap_score}; {n_fit} points{held})",
        f"FactorVAE    {pm('factor_vae')}   (batches of {o['batch']}, {o['votes']} training and {o['votes'] // 2} held-out votes; dimensions with std < {PRUNE} pruned)",
        f"             mean ± standard error over {o['repetitions']} repetitions (independent points and votes), seed {o['seed']}",
    ])  # fmt: skip
