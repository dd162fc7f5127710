"""Sample quality: FID, KID and precision / recall of a run's decoded prior draws against its test images.

All four compare two sets of features (``extractor``: a small classifier of the run's
images, its penultimate layer), real images' f_r (N, F) and generated images' f_g (M, F):

- FID (Heusel et al. 2017): ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)), the Frechet
  distance between Gaussians fitted to the two sets (torchmetrics, in float64);
- KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel k(a, b) = (a.b / F + 1)^3,
  averaged over random subsets of both sets (torchmetrics);
- precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls
  around its points reaching their k-th nearest neighbour in the set; precision is the
  fraction of generated points inside the real manifold, recall the fraction of real points
  inside the generated one.

Generated images are the means of p(x|z) for z ~ p(z) (a conditional run: z ~ p(z|y) with the
test set's labels), clamped to [0, 1], as many as the test images scored. The standard errors
are over ``draws`` independent sets of generated images scored against the same test images.
Lower FID and KID, higher precision and recall are better; from different extractors they do
not compare, so every number is reported with the extractor's name and hash. torchmetrics is
an optional extra (``pip install 'reparam[quality]'``), imported when a score is asked for.
"""

from __future__ import annotations

import math
import sys
import warnings

import torch

from ..errors import ReparamError
from .extractor import Extractor, load_or_train

DRAWS, K_NN, KID_SUBSETS, KID_SUBSET_SIZE, MAX_IMAGES = 3, 3, 50, 1000, 10000
QUALITY_JSON = "sample_quality.json"
PIP = "pip install 'reparam[quality]'"


def torchmetrics_image():
    """torchmetrics' FID and KID classes; ReparamError naming the pip command when it is missing."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError:
        raise ReparamError(f"sample quality needs torchmetrics; install it with: {PIP}") from None
    return FrechetInceptionDistance, KernelInceptionDistance


class _Given(torch.nn.Module):
    """torchmetrics' custom feature extractor for features computed already: passes them through."""

    def __init__(self, features: int):
        super().__init__()
        self.num_features = features

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between features real (N, F) and fake (M, F), N, M >= 2, in float64."""
    fid_cls, _ = torchmetrics_image()
    metric = fid_cls(feature=_Given(real.shape[1])).set_dtype(torch.float64)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = KID_SUBSETS, subset_size: int | None = None, seed: int = 0) -> tuple[float, float]:
    """KID's mean and standard deviation over ``subsets`` random subsets of ``subset_size``
    (default: min(1000, half the smaller set)) of real (N, F) and fake (M, F); seeded (the
    caller's RNG state is left as it was)."""
    _, kid_cls = torchmetrics_image()
    size = subset_size or max(2, min(KID_SUBSET_SIZE, min(len(real), len(fake)) // 2))
    with warnings.catch_warnings():  # its note that it keeps every feature: these are all it needs
        warnings.simplefilter("ignore", UserWarning)
        metric = kid_cls(feature=_Given(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def radii(f: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance from each row of f (N, F) to its k-th nearest other row: (N,)."""
    return torch.cat([torch.cdist(f[i : i + chunk], f).kthvalue(k + 1, dim=1).values for i in range(0, len(f), chunk)])  # k + 1: the row itself is at 0


def coverage(points: torch.Tensor, centres: torch.Tensor, r: torch.Tensor, chunk: int = 2048) -> float:
    """The fraction of points (M, F) within r_j (N,) of some centre j (N, F)."""
    inside = [(torch.cdist(points[i : i + chunk], centres) <= r).any(dim=1) for i in range(0, len(points), chunk)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = K_NN, real_radii: torch.Tensor | None = None) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of fake (M, F) against real (N, F),
    the manifolds' balls reaching each point's k-th nearest neighbour (distances in float32; the
    real set's radii (N,) may be given, computed once for several fake sets); both sets need more than k points."""
    if min(len(real), len(fake)) <= k:
        raise ReparamError(f"precision and recall with k = {k} need more than {k} images in each set, got {len(real)} and {len(fake)}")
    real, fake = real.float(), fake.float()
    r_real = radii(real, k) if real_radii is None else real_radii
    return coverage(fake, real, r_real), coverage(real, fake, radii(fake, k))


def scores(real: torch.Tensor, fake: torch.Tensor, k: int = K_NN, seed: int = 0, real_radii: torch.Tensor | None = None) -> dict:
    """FID, KID (and the spread of its subsets), precision and recall of features fake against real."""
    p, r = precision_recall(real, fake, k, real_radii)
    kid_mean, kid_std = kid(real, fake, seed=seed)
    return {"fid": fid(real, fake), "kid": kid_mean, "kid_subset_std": kid_std, "precision": p, "recall": r}


def summarize(per_draw: list[dict]) -> dict:
    """Each score's mean over draws and its standard error (None for one draw)."""
    out: dict = {}
    for key in ("fid", "kid", "precision", "recall"):
        vals = torch.tensor([d[key] for d in per_draw], dtype=torch.float64)
        out[key] = float(vals.mean())
        out[key + "_se"] = float(vals.std() / math.sqrt(len(vals))) if len(vals) > 1 else None
    return out


@torch.no_grad()
def generate(model, n: int, seed: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """n decoded prior draws (means of p(x|z), clamped to [0, 1]), (n, *x_shape); with labels (n,)
    of a conditional model, as many draws of p(z|y) per class as the labels hold. Seeded; the
    caller's RNG state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if labels is None:
            images = model.decode_mean(model.sample_prior(n))
        else:
            counts = torch.bincount(labels.long(), minlength=model.classes).tolist()
            parts = [(c, m) for c, m in enumerate(counts) if m]
            images = torch.cat([(v := model.given(torch.tensor(c))).decode_mean(v.sample_prior(m)) for c, m in parts])
    return images.float().clamp(0, 1)


def check(model, source) -> None:
    """ReparamError (one line) before any work: a table run, data without labels, torchmetrics missing."""
    from .extractor import check as check_data

    if model.columns is not None:
        raise ReparamError("sample quality compares images; this run models rows of a table: FID, KID and precision/recall do not apply")
    check_data(tuple(source.train.shape[1:]), source.train_labels, source.name)
    torchmetrics_image()


def subset(total: int, n: int, seed: int) -> torch.Tensor:
    """n indices of ``total`` drawn without replacement, seeded: a test subset drawn at random,
    since test sets are often ordered (MNIST's first and last 5,000 test images come from different writers)."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]


def measure(model, source, n: int | None = None, draws: int = DRAWS, seed: int = 0, k: int = K_NN, log=None) -> dict:
    """A run's sample quality: ``draws`` sets of n (default: the test set, at most 10,000)
    generated images, each scored against n test images (``subset(len(test), n, seed)``) through
    the run's extractor (read from its cache or trained there; ``log`` tells which, default stderr)."""
    check(model, source)
    if draws < 1 or (n is not None and n <= k):
        raise ReparamError(f"sample quality needs draws >= 1 and n > k = {k}, got draws = {draws}, n = {n}")
    n = min(n or MAX_IMAGES, len(source.test))
    ext = load_or_train(source, log or (lambda m: print(m, file=sys.stderr)))
    idx = subset(len(source.test), n, seed)
    real = ext.features(source.test[idx])
    r_real = radii(real.float(), k)
    labels = source.test_labels[idx] if model.classes else None
    per_draw = [scores(real, ext.features(generate(model, n, seed + d, labels)), k, seed + d, r_real) for d in range(draws)]
    how = {"generated": "means of p(x|z), z ~ p(z) (a conditional run: p(z|y) with the test labels), clamped to [0, 1]", "seed": seed}
    return describe_setup(ext, n, n, draws, k) | how | summarize(per_draw) | {"per_draw": per_draw}


def compare(ext: Extractor, real: torch.Tensor, fake: torch.Tensor, k: int = K_NN, seed: int = 0) -> dict:
    """The four scores of images fake (M, *x_shape) against real (N, *x_shape), one set each (no SE)."""
    per = scores(ext.features(real), ext.features(fake), k, seed)
    return describe_setup(ext, len(real), len(fake), 1, k) | summarize([per]) | {"per_draw": [per]}


def describe_setup(ext: Extractor, n_real: int, n_fake: int, draws: int, k: int) -> dict:
    return {"extractor": ext.info(), "n_test": n_real, "n_generated": n_fake, "draws": draws, "k": k, "kid_subsets": KID_SUBSETS,
            "se": f"over {draws} independent sets of generated images against the same test images" if draws > 1 else None}  # fmt: skip


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Images x (N, H, W) or (N, H, W, C) blurred by a Gaussian of ``sigma`` pixels (edges reflected)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    w = w / w.sum()
    img = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # (N, C, H, W)
    c = img.shape[1]
    img = torch.nn.functional.pad(img, (radius, radius, radius, radius), mode="reflect" if min(img.shape[-2:]) > radius else "replicate")
    img = torch.nn.functional.conv2d(img, w.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    img = torch.nn.functional.conv2d(img, w.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return img.squeeze(1) if x.dim() == 3 else img.permute(0, 2, 3, 1)


def lines(out: dict) -> list[str]:
    """The printed block: each score with its SE, and the extractor's name and hash on every line."""
    e = out["extractor"]
    tag = f"[{e['name']} sha256:{e['sha256'][:16]}]"
    acc = "-" if e["test_accuracy"] is None else f"{100 * e['test_accuracy']:.1f} %"
    se = f"± SE {out['se']}" if out["se"] else "one set, no SE"
    rows = [
        f"sample quality: {out['n_generated']} decoded prior draws x {out['draws']} vs {out['n_test']} test images; {se}",
        f"features     {e['name']} (penultimate layer, {e['features']} units; test accuracy {acc}) sha256 {e['sha256']}",
    ]
    for key, label, fmt in (("fid", "FID", ".3f"), ("kid", "KID", ".5f"), ("precision", "precision", ".4f"), ("recall", "recall", ".4f")):
        err = "" if out[key + "_se"] is None else f" ± {format(out[key + '_se'], fmt)}"
        rows.append(f"{label:<13}{format(out[key], fmt)}{err}  {tag}" + (f"  (k = {out['k']})" if key in ("precision", "recall") else ""))
    return rows
