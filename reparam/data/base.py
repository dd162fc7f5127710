"""The data contract: ``Data``, a ``Source`` per ``data.name``, and the rules every source shares.

A source is a small class registered with ``@register("name")``: ``claims(path)`` (whether
``data.name=auto`` picks it for ``data.path``), ``check(cfg)`` (its own keys' rules when it is
chosen), ``check_unused(cfg)`` (its own keys refused when another source is), ``splits``
(no test split of its own: ``data.test_fraction`` holds one out) and ``load(cfg, columns)``.

``auto`` (the default): the source that claims ``data.path``, sources asked lowest
``precedence`` first: digits without a path; with one, a table named by its form
(``.csv``, ``.parquet``, ``sklearn:``), a folder holding ``mnist.npz`` (mnist), any other
folder (folder), an ``.npz``/``.npy`` file (file). A key that has no effect on the chosen
source (a path for digits, a download for anything but MNIST, a test fraction for data
that carry their own split) is refused, never ignored.

Shared here: binarization (``none``, ``static``, ``dynamic``) and M2's labelled subset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from .. import tables
from ..errors import ConfigError, DataError, one_of, require
from ..registry import Registry
from . import validation
from .storage import unit


@dataclass
class Factors:
    """The known factors of variation of a source's images: ``names`` and ``sizes`` (F,), and
    each image's factor values as indices, ``train`` (N, F) and ``test`` (N_test, F) int64 with
    column f in 0..sizes[f] - 1 (the generated ``shapes`` carry them; any source may); ``valid``
    those of ``data.validation``'s rows, taken from ``train`` with them."""

    names: list[str]
    sizes: list[int]
    train: torch.Tensor
    test: torch.Tensor
    valid: torch.Tensor | None = None


@dataclass
class Data:
    """Images (N, *x_shape) in [0, 1] and optional integer labels (N,) in 0..len(classes) - 1;
    or, from a table, coded rows (N, F') and their ``columns`` (``reparam.tables.Columns``).
    Images are held as ``images.compact`` gives them (uint8 levels k for k / 255, booleans, or
    float32); ``images.unit`` turns a batch of them into float32 in [0, 1].

    ``classes`` names the labels (``["0", ..., "9"]`` for digits and MNIST, the subfolder
    names of an image folder); None when the data carry no labels.
    """

    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    name: str
    classes: list[str] | None = None
    columns: tables.Columns | None = None
    valid: torch.Tensor | None = None  # data.validation's rows, taken from the training set (``validation.hold_out``)
    valid_labels: torch.Tensor | None = None
    factors: Factors | None = None

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def nll_shift(self) -> float | None:
        """Nats to add to a per-example NLL of the coded rows to get it in the data's original
        units (sum_j log std_j over standardized columns); None when the two coincide."""
        return None if self.columns is None else self.columns.log_scale()


class Source:
    """One ``data.name``: which paths it claims, its keys' rules, and its loader."""

    name: str
    precedence: ClassVar[int] = 50  # data.name=auto asks the sources that claim a path lowest first
    splits: ClassVar[bool] = False  # no test split of its own: data.test_fraction holds one out

    def claims(self, path: str) -> bool:
        """Whether ``data.name=auto`` reads ``data.path`` (``""`` when none is given) as this source."""
        return False

    def check(self, cfg) -> None:
        """The ``data`` section's rules for this source's keys when it is chosen (ConfigError, one line)."""

    def check_unused(self, cfg) -> None:
        """This source's own keys, refused (ConfigError, one line) when another source is chosen."""

    def load(self, cfg, columns: tables.Columns | None = None) -> Data:
        """The data; ``columns`` (a run's saved ones) code a table's rows as that run did."""
        raise NotImplementedError


#: data.name -> Source class, in the order messages list them (``reparam.data`` imports the sources)
SOURCES: Registry[type[Source]] = Registry("data source", ordered=True)


def register(name: str) -> Callable[[type[Source]], type[Source]]:
    return SOURCES.register(name)


def source(name: str) -> Source:
    return SOURCES.lookup(name)()


BINARIZATIONS = ("none", "static", "dynamic")


def changed(cfg, key: str) -> bool:
    """Whether the ``data`` section's ``key`` differs from its default (the user set it)."""
    field = {f.name: f for f in dataclasses.fields(cfg)}[key]
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[operator]
    return getattr(cfg, key) != default


def needs_path(cfg, what: str) -> None:
    """A source that reads ``data.path`` refuses to run without one; ``what`` says what it takes."""
    require(bool(cfg.path), f"data.name={cfg.name} needs data.path={what}")


def infer_source(cfg) -> str:
    """``data.name``, with ``auto`` resolved: the first source, lowest precedence first, that claims ``data.path``."""
    if cfg.name != "auto":
        return cfg.name
    for cls in sorted(SOURCES.values(), key=lambda c: c.precedence):
        if cls().claims(cfg.path):
            return cls.name
    path = Path(cfg.path).expanduser()
    require(path.exists(), f"data.path {path} does not exist")
    raise ConfigError(f"data.path {path} is neither a table (.csv, .parquet), an .npz/.npy file nor a folder of images; set data.name (one of {', '.join(SOURCES)})")


def check(cfg) -> None:
    """The ``data`` config section's rules (ConfigError, one line naming the key); ``auto`` resolved first."""
    one_of("data.name", cfg.name, ("auto", *SOURCES))
    cfg.name = infer_source(cfg)
    one_of("data.binarize", cfg.binarize, BINARIZATIONS)
    require(0.0 < cfg.test_fraction < 1.0, f"data.test_fraction must lie in (0, 1), got {cfg.test_fraction}")
    validation.check(cfg)
    chosen = source(cfg.name)
    chosen.check(cfg)
    require(cfg.max_levels >= 2, f"data.max_levels must be >= 2, got {cfg.max_levels}")
    require(not (cfg.shard and cfg.labeled), "data.shard parts the training set between processes and M2 (data.labeled) trains in one; drop one of them")
    for name in SOURCES:
        if name != cfg.name:
            source(name).check_unused(cfg)
    splitting = [name for name in SOURCES if SOURCES[name].splits]
    require(
        chosen.splits or not changed(cfg, "test_fraction"),
        f"data.test_fraction applies to data without a test split (data.name={', '.join(splitting[:-1])} or {splitting[-1]}); {cfg.name} keeps its own, drop it",
    )


def check_labels(cfg, data: Data) -> None:
    """A conditional run's data carry labels; ``data.labeled`` fits them (DataError, one line)."""
    if cfg.model.condition != "label":
        return
    if data.classes is None or data.train_labels is None or data.test_labels is None:
        raise DataError(
            f"model.condition=label needs labels, and data {data.name!r} has none: use digits or MNIST, "
            "an .npz with y_train and y_test (or x and y), or a folder with one subfolder per class"
        )
    c = len(data.classes)
    for split, y in (("training", data.train_labels), ("test", data.test_labels), ("validation", data.valid_labels)):
        if y is not None and len(y) and int(y.max()) >= c:
            raise DataError(f"the {split} labels hold class {int(y.max())}, but the data name {c} classes (0..{c - 1})")
    if cfg.data.labeled:
        labelled_subset(data.train_labels, cfg.data.labeled, c, cfg.seed)
        n_l, bl = cfg.data.labeled, cfg.train.labeled_batch_size
        require(bl <= n_l, f"train.labeled_batch_size={bl} is more than the {n_l} labelled images (data.labeled)")


def labelled_subset(y: torch.Tensor, n: int, classes: int, seed: int) -> torch.Tensor:
    """Indices (n,) of n images of y (N,) whose labels are kept, n / C of each class, at random
    with ``seed`` (sorted); DataError (one line) when the data cannot give that."""
    if n >= len(y):
        raise DataError(f"data.labeled={n} must be fewer than the {len(y)} training images (M2 needs unlabelled ones too)")
    if n % classes:
        raise DataError(f"data.labeled={n} is not divisible by the {classes} classes; use a multiple of {classes} (class-balanced)")
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in range(classes):
        members = torch.nonzero(y == c).flatten()
        if len(members) < n // classes:
            raise DataError(f"class {c} has {len(members)} training images, fewer than the {n // classes} per class that data.labeled={n} asks")
        picked.append(members[torch.randperm(len(members), generator=g)[: n // classes]])
    return torch.sort(torch.cat(picked)).values


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli draw of every grey level: pixel ~ Bernoulli(x) (the fixed binarizations
    of test sets and of ``static``; ``draw_binary`` is the training loop's faster draw)."""
    return torch.bernoulli(x, generator=generator)


def draw_binary(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """pixel ~ Bernoulli(x) as [u < x] with u ~ U[0, 1): the same distribution as ``binarize``
    (other draws), one uniform per pixel, about 4x faster than ``torch.bernoulli`` on a CPU,
    where it took 8% of a training step at batch 100. Float x in [0, 1]; 0 and 1 stay put."""
    return torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device).lt_(x)


TEST_BINARIZATION_SEED = 12345


def load(cfg, columns: tables.Columns | None = None) -> Data:
    """Load the configured source and apply static binarization; a table is coded with
    ``columns`` (a run's saved ones) when given.

    With ``binarize=dynamic`` the training images stay grey (the trainer draws a new
    binarization every time an image is used) while the test set is binarized once
    with a fixed seed (not the run's), so held-out numbers are comparable across runs.
    ``data.validation`` takes its rows from the training set first (``validation.hold_out``);
    they are binarized once, with a fixed seed, as the test set is.
    """
    return prepare(source(infer_source(cfg)).load(cfg, columns), cfg)


def prepare(data: Data, cfg) -> Data:
    """A source's data as training takes them: ``data.validation``'s rows taken from the training
    set (``validation.hold_out``), the test and validation sets as float32 (evaluated, pictured and
    explored whole), the training set as held (uint8 levels stay so, converted per batch; a static
    binarization as booleans), static binarization applied (``load``)."""
    data = validation.hold_out(data, cfg.validation)
    data.test = unit(data.test)
    if data.valid is not None:
        data.valid = unit(data.valid)
    if cfg.binarize != "none":
        g = torch.Generator().manual_seed(TEST_BINARIZATION_SEED)
        data.test = binarize(data.test, g)
        if data.valid is not None:  # fixed too, with its own stream: the test and static draws stay as without it
            data.valid = binarize(data.valid, torch.Generator().manual_seed(validation.VALIDATION_BINARIZATION_SEED))
        if cfg.binarize == "static":
            data.train = binarize(unit(data.train), g).bool()
    return data
