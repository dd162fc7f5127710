"""The feature extractor of ``reparam eval --sample-quality``: a small classifier of the run's images.

FID, KID and precision / recall compare sets of images through the features of a network;
Inception-v3's features need a download and 299x299 colour input, so reparam trains its own:
an MLP on the flattened pixels (``HIDDEN`` and ``FEATURES`` ReLU units, then the class
logits) fitted to the run's labelled training images on first use, seeded, for ``STEPS``
Adam steps of ``BATCH`` images (seconds on a CPU, for digits as for MNIST). The features are
its penultimate layer (``FEATURES`` ReLU units), divided by their root mean square over the
first 5,000 training images, so that distances read alike across data sets.

The weights are cached as safetensors (never a pickle) under ``$REPARAM_CACHE``, else
``$XDG_CACHE_HOME/reparam``, else ``~/.cache/reparam``, in ``extractors/NAME.safetensors``;
NAME carries the recipe, the data's name and image shape and a hash of the training images
and labels, so another data set trains another extractor. Scores from different extractors
do not compare: every score is reported with the extractor's name and the sha256 of its weights.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.storage import unit
from ..errors import ReparamError
from ..files import save_tensors
from ..optim import make_optimizer

RECIPE = "mlp1"  # change it with the architecture or the training below: a new name, a new cache file
STEPS, BATCH, LR, SEED, HIDDEN, FEATURES = 1000, 128, 1e-3, 0, 256, 128


class Classifier(nn.Module):
    """Images (B, H, W) grey or (B, H, W, C) colour in [0, 1] -> features (B, FEATURES); ``head`` -> logits."""

    scale: torch.Tensor

    def __init__(self, pixels: int, classes: int, hidden: int = HIDDEN, features: int = FEATURES):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, features), nn.ReLU())
        self.head = nn.Linear(features, classes)
        self.num_features = features  # read by torchmetrics in place of a trial forward
        self.register_buffer("scale", torch.ones(()))  # features in units of their RMS over training images

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.scale


@dataclass
class Extractor:
    """A trained classifier, its name, the sha256 of its weights and its test accuracy."""

    net: Classifier
    name: str
    sha256: str
    accuracy: float | None
    path: Path

    def info(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "test_accuracy": self.accuracy, "features": self.net.num_features, "path": str(self.path)}

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
        """Penultimate-layer features of images x (N, *x_shape): (N, FEATURES) float64."""
        self.net.eval()
        return torch.cat([self.net(x[i : i + batch].float()).double() for i in range(0, len(x), batch)])


def cache_dir() -> Path:
    """$REPARAM_CACHE, else $XDG_CACHE_HOME/reparam, else ~/.cache/reparam."""
    if os.environ.get("REPARAM_CACHE"):
        return Path(os.environ["REPARAM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reparam"


def check(x_shape: tuple[int, ...], labels: torch.Tensor | None, data_name: str) -> None:
    """ReparamError (one line) for data the extractor cannot learn: rows of a table, no labels."""
    if len(x_shape) not in (2, 3):
        raise ReparamError(f"sample quality compares images; {data_name} holds rows of a table (shape {tuple(x_shape)}): FID, KID and precision/recall do not apply")
    if labels is None or int(labels.max()) < 1:
        raise ReparamError(f"sample quality needs labelled training images to train its feature extractor; {data_name} has {'no labels' if labels is None else 'one class'}")


def name_for(data_name: str, x: torch.Tensor, y: torch.Tensor) -> str:
    """RECIPE-DATA-HxW[xC]-HASH, the hash over the recipe, the training images and their labels."""
    h = hashlib.sha256(f"{RECIPE} {STEPS} {BATCH} {LR} {SEED} {HIDDEN} {FEATURES} {tuple(x.shape)}".encode())
    h.update(x.float().contiguous().numpy().tobytes())
    h.update(y.long().contiguous().numpy().tobytes())
    return f"{RECIPE}-{data_name}-{'x'.join(map(str, x.shape[1:]))}-{h.hexdigest()[:10]}"


def train(x: torch.Tensor, y: torch.Tensor, classes: int) -> Classifier:
    """The classifier fitted to images x (N, *x_shape) and labels y (N,): STEPS seeded Adam steps
    of cross-entropy on batches drawn with replacement (the caller's RNG state untouched)."""
    gen = torch.Generator().manual_seed(SEED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        net = Classifier(x[0].numel(), classes)
    opt = make_optimizer(net.parameters(), LR)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steps this small run fastest on one thread (and far faster on a busy machine)
    try:
        for _ in range(STEPS):
            idx = torch.randint(len(x), (BATCH,), generator=gen)
            loss = nn.functional.cross_entropy(net.head(net(x[idx])), y[idx].long())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            net.scale.fill_(net.body(x[:5000]).square().mean().rsqrt())
    finally:
        torch.set_num_threads(threads)
    return net.eval()


@torch.no_grad()
def accuracy(net: Classifier, x: torch.Tensor, y: torch.Tensor | None) -> float | None:
    """The fraction of images x classified as their labels y (None without labels)."""
    if y is None or len(y) == 0:
        return None
    pred = torch.cat([net.head(net(x[i : i + 1000])).argmax(-1) for i in range(0, len(x), 1000)])
    return float((pred == y.long()).double().mean())


def load_or_train(source, log=print) -> Extractor:
    """The extractor of a ``reparam.data.Data``'s training images: read from the cache, or trained
    and written there first (``log`` tells which)."""
    check(tuple(source.train.shape[1:]), source.train_labels, source.name)
    x, y = unit(source.train), source.train_labels  # 8-bit images are held as uint8 levels
    name = name_for(source.name, x, y)
    path = cache_dir() / "extractors" / f"{name}.safetensors"
    classes = int(y.max()) + 1
    if not path.exists():
        log(f"training the feature extractor {name} on {len(x)} training images ({STEPS} steps of {BATCH}); cached in {path}")
        net = train(x, y, classes)
        acc = accuracy(net, source.test, source.test_labels)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, net.state_dict(), {"name": name, "test_accuracy": repr(acc)})
    net, acc = read(path, x[0].numel(), classes)
    return Extractor(net, name, weights_sha256(net), acc, path)


def weights_sha256(net: nn.Module) -> str:
    """sha256 over the weights, name by name in sorted order (name, dtype, shape, bytes): the same
    weights give the same hash whatever order the file's header lists them and its metadata in."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def read(path: Path, pixels: int, classes: int) -> tuple[Classifier, float | None]:
    """A cached classifier and its recorded test accuracy; ReparamError naming the file if it is damaged."""
    from safetensors import safe_open

    net = Classifier(pixels, classes)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            net.load_state_dict({k: f.get_tensor(k) for k in f.keys()})
        acc = None if meta.get("test_accuracy", "None") == "None" else float(meta["test_accuracy"])
    except Exception as e:  # a truncated file, foreign tensors or metadata: the cache entry is unusable
        raise ReparamError(f"the cached feature extractor {path} is damaged ({type(e).__name__}); delete it and it is trained again") from None
    return net.eval(), acc
