"""Typed configuration: one dataclass per component, a TOML file, ``key=value`` overrides.

Unknown sections and keys are rejected with the list of valid ones. The ``latent`` and
``likelihood`` sections also take the options of the chosen family or head (for example
``likelihood.scale=0.1``); those are checked against the component's own signature.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, check_seed, one_of, require

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


@dataclass
class DataConfig:
    name: str = "auto"  # auto | digits | mnist | file | folder | table | shapes | hf | python (auto: digits, or what data.path is)
    path: str = ""  # a file, a folder holding mnist.npz, (folder) a folder of PNG/JPEG images, (table) a .csv/.parquet/.npy or sklearn:wine, (hf) a saved dataset, a dataset folder or a Hub name
    binarize: str = "dynamic"  # none | static | dynamic (table: none, its default)
    download: bool = False  # fetch MNIST from `url` when no local copy is found
    url: str = MNIST_URL  # where data.download fetches MNIST from
    sha256: str = MNIST_SHA256  # the downloaded file's expected SHA-256
    test_fraction: float = 0.15  # held-out share for arrays that carry no test split
    categorical: list[str] = field(default_factory=list)  # table: numeric columns to read as categories
    max_levels: int = 50  # table: most levels a categorical column may have
    validation: int | float = 0  # held out from the training set for selection (train.keep_best, train.early_stop, reparam sweep): N images or a fraction; fixed rows, whatever the seed; 0: none
    canvas: int = 32  # shapes: image side in pixels
    scales: int = 4  # shapes: values of the scale factor
    rotations: int = 8  # shapes: values of the rotation factor, evenly in [0, 2 pi)
    positions: int = 8  # shapes: values of each of the x and y factors
    labeled: int = 0  # semi-supervised M2: keep the labels of this many training images (class-balanced, seeded); 0: all or none
    columns: list[str] = field(default_factory=list)  # table: the columns to model (default: all)
    image_column: str = ""  # hf: the column of images (default: the one column of Image features)
    label_column: str = ""  # hf: the column of integer labels (default: label, where there is one)
    train_split: str = "train"  # hf: the split to train on
    test_split: str = "test"  # hf: the split held out; "": data.test_fraction of the training split, at random
    shard: bool = False  # torchrun: each process holds only its part of the training set (reparam.train.batches)

    def validate(self) -> None:
        from . import data

        data.check(self)


@dataclass
class ModelConfig:
    arch: str = "mlp"  # mlp | conv (images (H, W) or (H, W, C) with H, W divisible by 2**len(channels))
    hidden: list[int] = field(default_factory=lambda: [256, 128])  # dense layers (after the convs for conv)
    activation: str = "tanh"  # tanh | relu | elu | silu | softplus | leaky_relu: the hidden layers' nonlinearity
    channels: list[int] = field(default_factory=lambda: [32, 64])  # conv: one stride-2 conv per entry
    stochastic: list[int] = field(default_factory=list)  # sizes of stochastic layers above latent.dim (hierarchical)
    stochastic_hidden: list[int] = field(default_factory=list)  # hidden sizes between layers; default: twice the upper size, twice
    condition: str = "none"  # none | label: a conditional VAE q(z|x, y), p(x|z, y) (with data.labeled: the M2 model)
    init: str = "auto"  # auto | he | torch: how the networks' dense layers start (reparam.model.init)
    output_bias: str = "auto"  # auto | data | init: the decoder's output bias at the training data's mean (data), or as model.init drew it; auto: data for a hierarchy

    def validate(self) -> None:
        from . import networks

        networks.check(self)


@dataclass
class LatentConfig:
    family: str = "gaussian"  # the latent distribution q(z|x) and its prior (reparam.latents)
    dim: int = 8  # latent dimensions D (of the first stochastic layer)
    flow: str = "none"  # none | planar | iaf: a flow in the posterior (reparam.flows)
    flow_steps: int = 0  # steps of the flow; 0: its default (4)
    options: dict[str, Any] = field(default_factory=dict)  # the family's own keys

    def validate(self) -> None:
        from . import flows, latents

        require(self.dim > 0, f"latent.dim must be a positive integer, got {self.dim}")
        check_section_options("latent", ["family", "dim", "flow", "flow_steps"], self.family, latents.options(self.family), self.options)
        family = latents.get(self.family, self.dim, **self.options)
        flows.check(self, family)


@dataclass
class PriorConfig:
    name: str = "standard"  # standard | mog | vamp | label (reparam.priors)
    components: int = 0  # mixture components of a learned prior; 0: its default (500)

    def validate(self) -> None:
        from . import priors

        priors.REGISTRY.lookup(self.name)


@dataclass
class LikelihoodConfig:
    name: str = "bernoulli"  # the observation model p(x|z) (reparam.likelihoods)
    options: dict[str, Any] = field(default_factory=dict)  # the head's own keys

    def validate(self) -> None:
        from . import likelihoods

        check_section_options("likelihood", ["name"], self.name, likelihoods.options(self.name), self.options)
        likelihoods.get(self.name, (1,), **self.options)


@dataclass
class ObjectiveConfig:
    name: str = "elbo"  # elbo | iwae | renyi (see reparam.objectives.bounds)
    k: int = 1  # samples per example (the IWAE's K)
    beta: float = 1.0  # KL weight (Higgins et al. 2017); the weight reached after warm-up
    warmup: int | str = 0  # linear KL warm-up from 0 to beta (Sonderby et al. 2016): N steps, or "N%" of training (of train.budget's time under a budget); 0: none
    free_bits: float = 0.0  # lambda: nats per latent dimension (or group) (Kingma et al. 2016)
    free_bits_group: int = 1  # latent dimensions per free-bits group (1: per dimension)
    estimator: str = "auto"  # gradient: auto | pathwise | score | iwae | stl | dreg (see objectives/estimators.py)
    baseline: str = "none"  # for score: none | moving_average | nvil | loo
    labels: str = "exact"  # M2's unlabelled images: exact | relaxed | score (see reparam.objectives.labels)
    label_weight: float = 0.1  # alpha of Kingma et al. (2014): the classifier's weight, alpha N / N_l per labelled image
    label_temperature: float = 0.1  # labels=relaxed: the Gumbel-softmax temperature (straight through: lower is less biased)
    label_baseline: str = "loo"  # labels=score: loo (two labels, each the other's baseline) | none | moving_average | nvil
    options: dict[str, Any] = field(default_factory=dict)  # the bound's own keys (renyi: alpha)

    def validate(self) -> None:
        from .objectives import rules

        check_section_options("objective", [f.name for f in dataclasses.fields(self) if f.name != "options"], self.name, rules.options(self.name), self.options)
        rules.check(self)

    def check_family(self, family, density_everywhere: bool = True) -> None:
        """The bound and estimator against the family (reparam.objectives.rules.check_family)."""
        from .objectives import rules

        rules.check_family(self, family, density_everywhere)


@dataclass
class TrainConfig:
    epochs: int = 100  # passes over the training set
    batch_size: int = 100  # images per step (the global batch under torchrun)
    lr: float = 1e-3  # Adam's learning rate
    lr_schedule: str = "constant"  # constant | cosine | exponential, over all steps (stretched if resumed with more epochs)
    lr_final: float = 0.0  # cosine/exponential: the rate at the last step (exponential: > 0)
    eval_k: int | str = "auto"  # final IS log-likelihood: auto (budgeted: K and a test subset fit ~15% of training time), N samples on every test image, 0 skips it
    eval_every: int = 1  # epochs between held-out evaluations
    device: str = "cpu"  # cpu | cuda | auto (cuda when a GPU is present)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 needs CUDA and uses a GradScaler)
    channels_last: bool = False  # conv weights in channels_last memory format (faster on tensor cores)
    compile: bool = False  # torch.compile the encoder and decoder
    threads: int | str = "auto"  # auto: timed trials pick the fastest count (1 on a busy machine); N: torch.set_num_threads(N); 0: torch's default
    budget: str | float = 0  # wall-clock training budget: "90s", "15m", "1h" or seconds; 0: none (train.epochs only)
    progress: bool = True  # progress bars and the opening line on stderr
    report: bool = True  # write RUN/report.html with every figure at the end
    checkpoint_every: int = 0  # steps between checkpoints; 0: at every evaluation only
    keep_checkpoints: int = 3  # newest checkpoints kept in RUN/checkpoints
    clip_grad: float = 0.0  # clip the gradient's global norm to this; 0: no clipping
    ema: float = 0.0  # decay of an exponential moving average of the weights, which evaluation and model.safetensors use (0.999: about the last 1,000 steps); 0: none
    max_bad_steps: int = 5  # non-finite steps in a row before rolling back
    max_rollbacks: int = 3  # rollbacks before the run stops
    lr_backoff: float = 0.5  # learning-rate factor applied at each rollback
    gradvar_every: int = 0  # epochs between gradient-variance measurements (RUN/gradvar.jsonl); 0: never
    gradvar_replicates: int = 20  # gradient estimates per estimator at each measurement
    keep_best: str = ""  # keep the weights of the best evaluation by this validation metric (needs data.validation): elbo | log_px_z | kl | classification_error (M2); "": the last weights
    early_stop: int = 0  # stop after this many evaluations (after the KL warm-up) without a better train.keep_best metric; 0: never
    labeled_batch_size: int = 0  # M2: labelled images per step beside batch_size unlabelled ones; 0: min(data.labeled, batch_size)
    log: list[str] = field(default_factory=list)  # experiment trackers: tensorboard, mlflow, wandb (reparam.train.tracking)

    def validate(self) -> None:
        for key in ("epochs", "batch_size", "eval_every", "keep_checkpoints", "max_bad_steps"):
            require(getattr(self, key) >= 1, f"train.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("eval_k", "threads"):
            value = getattr(self, key)
            require(value == "auto" or isinstance(value, int) and value >= 0, f"train.{key} must be auto or an integer >= 0, got {value!r}")
        duration_seconds(self.budget, "train.budget")  # ConfigError for a malformed budget
        require(self.gradvar_replicates >= 2, f"train.gradvar_replicates must be >= 2, got {self.gradvar_replicates}")
        for key in ("checkpoint_every", "clip_grad", "max_rollbacks", "gradvar_every", "labeled_batch_size", "early_stop"):
            require(getattr(self, key) >= 0, f"train.{key} must be >= 0, got {getattr(self, key)}")
        require(0 < self.lr_backoff < 1, f"train.lr_backoff must lie in (0, 1), got {self.lr_backoff}")
        require(0 <= self.ema < 1, f"train.ema must lie in [0, 1) (a decay such as 0.999; 0 for none), got {self.ema}")
        require(math.isfinite(self.lr) and self.lr > 0, f"train.lr must be a finite rate > 0, got {self.lr}")
        self.validate_schedule()
        if self.keep_best:
            one_of("train.keep_best", self.keep_best, tuple(SELECTABLE))
        require(not self.early_stop or bool(self.keep_best), f"train.early_stop={self.early_stop} watches the metric of train.keep_best; set it too (e.g. train.keep_best=elbo)")
        from . import devices

        one_of("train.device", self.device, devices.DEVICES)
        one_of("train.precision", self.precision, tuple(devices.DTYPES))

    @property
    def budget_seconds(self) -> float:
        """``budget`` in seconds (0: no budget); ConfigError for anything but a number with an optional s, m or h."""
        return duration_seconds(self.budget, "train.budget")

    def validate_schedule(self) -> None:
        from . import optim

        one_of("train.lr_schedule", self.lr_schedule, tuple(optim.SCHEDULES))
        require(math.isfinite(self.lr_final) and self.lr_final >= 0, f"train.lr_final must be a finite rate >= 0, got {self.lr_final}")
        require(
            self.lr_schedule != "exponential" or self.lr_final > 0,
            f"train.lr_final must be > 0 for train.lr_schedule=exponential (it decays by a constant factor), got {self.lr_final}",
        )
        require(
            self.lr_schedule != "constant" or self.lr_final == 0,
            f"train.lr_final applies to train.lr_schedule=cosine or exponential; with constant the rate stays train.lr (got train.lr_final={self.lr_final})",
        )


#: The validation metrics ``train.keep_best`` (and a sweep) selects on: +1 where higher is better, -1 where lower.
#: Each is computed on every process (not the rank-0 dashboard), so all agree when to stop.
SELECTABLE = {"elbo": 1, "log_px_z": 1, "kl": -1, "classification_error": -1}

UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(value: str | float, key: str) -> float:
    """Seconds from a duration: ``90``, ``90s``, ``15m``, ``1.5h`` (a bare number is seconds); 0 means none."""
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)", text) if not isinstance(value, bool) else None
    if match is None:
        raise ConfigError(f"{key} must be a duration such as 90s, 15m or 1h (or seconds; 0 for none), got {value!r}")
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    require(math.isfinite(seconds), f"{key} must be a finite duration, got {value!r}")
    return seconds


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "latent": LatentConfig,
    "likelihood": LikelihoodConfig,
    "prior": PriorConfig,
    "objective": ObjectiveConfig,
    "train": TrainConfig,
}
OPEN_SECTIONS = ("latent", "likelihood", "objective")  # extra keys become component options


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    likelihood: LikelihoodConfig = field(default_factory=LikelihoodConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0  # seeds the weights, the batches and every draw

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed}
        for name in SECTIONS:
            section = dataclasses.asdict(getattr(self, name))
            section.update(section.pop("options", {}))
            out[name] = section
        return out

    def validate(self) -> Config:
        from . import latents, model, priors
        from .objectives import labels

        check_seed("seed", self.seed)
        for name in SECTIONS:
            getattr(self, name).validate()
        family = latents.get(self.latent.family, self.latent.dim, **self.latent.options)
        priors.check(self.prior, family)
        model.check(self)
        self.objective.check_family(family, density_everywhere=self.latent.flow == "none")
        self.check_table()
        labels.check(self)
        self.check_selection()
        return self

    def check_selection(self) -> None:
        """Selection reads a validation set, never the test set; M2's error needs M2."""
        key = "train.keep_best" if self.train.keep_best else "train.early_stop"
        require(not (self.train.keep_best or self.train.early_stop) or bool(self.data.validation), f"{key} selects on a validation set; set data.validation=N images or a fraction (e.g. data.validation=0.1): selecting on the test set would bias its numbers")
        m2 = self.model.condition == "label" and bool(self.data.labeled)
        require(self.train.keep_best != "classification_error" or m2, "train.keep_best=classification_error is M2's classifier error; it needs model.condition=label and data.labeled=N")

    def check_table(self) -> None:
        """A table's rows take the table head and the MLP; the table head takes a table."""
        table = self.data.name == "table"
        require(not table or self.likelihood.name == "table", f"data.name=table takes likelihood.name=table (a likelihood per column), its default; got {self.likelihood.name!r}")
        require(table or self.likelihood.name != "table", f"likelihood.name=table models the columns of a table; use it with data.name=table (got data.name={self.data.name})")
        require(not table or self.model.arch == "mlp", f"model.arch={self.model.arch} needs images; a table's rows take model.arch=mlp")


def check_section_options(section: str, own: list[str], component: str, valid: dict, given: dict) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        keys = ", ".join(f"{section}.{k}" for k in own + sorted(valid))
        raise ConfigError(f"unknown config key {section}.{unknown[0]} for {component!r}; valid keys: {keys}")


def valid_keys() -> list[str]:
    keys = ["seed"]
    for name, cls in SECTIONS.items():
        keys += [f"{name}.{f.name}" for f in dataclasses.fields(cls) if f.name != "options"]
    return keys


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and args[0] is str and isinstance(value, str) and not value.startswith("["):  # train.log=tensorboard,mlflow ([a]: the hint below)
        value = [v.strip() for v in value.split(",") if v.strip()]
    if origin in (typing.Union, types.UnionType):  # int | str: the first type the value has
        for arm in args:
            try:
                return _coerce(value, arm, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key} must be of type {' or '.join(a.__name__ for a in args)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            hint = ' (quote text items: ["a", "b"])' if isinstance(value, str) and value.startswith("[") else ""
            raise ConfigError(f"{key} must be a list, got {value!r}{hint}")
        return [_coerce(v, args[0], key) for v in value]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{key} must be of type {tp.__name__}, got {value!r}")
    return value


def _section(name: str, raw: Any) -> Any:
    cls = SECTIONS[name]
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)} - {"options"}
    kwargs: dict[str, Any] = {}
    extra = {k: v for k, v in raw.items() if k not in known}
    if extra and name not in OPEN_SECTIONS:
        valid = ", ".join(f"{name}.{k}" for k in sorted(known))
        raise ConfigError(f"unknown config key {name}.{sorted(extra)[0]}; valid keys: {valid}")
    for key in known & set(raw):
        kwargs[key] = _coerce(raw[key], hints[key], f"{name}.{key}")
    if name in OPEN_SECTIONS:
        kwargs["options"] = extra
    return cls(**kwargs)


#: data.name -> the defaults it brings for keys the user did not set (a table's rows are not grey levels).
SOURCE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {"table": {"likelihood": {"name": "table"}, "data": {"binarize": "none"}}}


#: What a model with stochastic layers above the first brings where no key was given: a KL warm-up
#: over the first half of training (Sonderby et al. 2016). Without one, the two-layer MNIST model
#: started with He's start collapsed to an NLL of 200.7 (one layer: 102.6; issue 22's measurement);
#: with it, two layers trail one by 1.64 ± 0.24 nats (BENCHMARKS.md, "layers").
STOCHASTIC_DEFAULTS: dict[str, dict[str, Any]] = {"objective": {"warmup": "50%"}}


def _with_defaults(raw: dict[str, Any], defaults: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``raw`` with ``defaults`` (section -> keys) filled in where no key was given."""
    out = dict(raw)
    for section, keys in defaults.items():
        if isinstance(out.get(section, {}), dict):
            out[section] = {**keys, **out.get(section, {})}
    return out


def _shape_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the defaults a hierarchy brings (``STOCHASTIC_DEFAULTS``) where no key was given."""
    model = raw.get("model")
    stochastic = model.get("stochastic") if isinstance(model, dict) else None
    return _with_defaults(raw, STOCHASTIC_DEFAULTS) if isinstance(stochastic, list) and stochastic else raw


def _source_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the defaults of its data source filled in where no key was given."""
    data = raw.get("data")
    given = data if isinstance(data, dict) else {}  # the data section as written
    source, path = given.get("name", "auto"), given.get("path", "")
    if source == "auto" and isinstance(path, str):  # a table named by its path brings the table's defaults too
        from .data import is_table_path

        source = "table" if is_table_path(path) else source
    defaults = SOURCE_DEFAULTS.get(source) if isinstance(source, str) else None
    return _with_defaults(raw, defaults) if defaults else raw


def from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a Config from nested dicts (a parsed TOML or config.json)."""
    unknown = sorted(set(raw) - set(SECTIONS) - {"seed"})
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}; valid keys: {', '.join(valid_keys())}")
    raw = _shape_defaults(_source_defaults(raw))
    cfg = Config(**{name: _section(name, raw[name]) for name in SECTIONS if name in raw})
    if "seed" in raw:
        cfg.seed = _coerce(raw["seed"], int, "seed")
    return cfg.validate()


def from_saved(raw: dict[str, Any]) -> Config:
    """A run's config.json as a Config, read as the version that wrote it trained.

    Every saved config holds every key. One without ``model.output_bias`` started its decoder's
    output bias as ``model.init`` drew it (``init``). One without ``model.init`` was written before 0.3:
    its networks started as torch builds them (``model.init=torch``), its ``latent.flow=iaf``
    was the gated IAF of that time (``iaf_gated``), and its ``objective.label_baseline`` and
    ``label_temperature`` hold that time's defaults, which no longer are, where they do not
    apply (a run that used them keeps them). Everything else reads as written.
    """
    model, latent, objective, data = (raw.get(k) for k in ("model", "latent", "objective", "data"))
    if isinstance(model, dict) and "output_bias" not in model:  # written before model.output_bias: the bias as init drew it
        raw = {**raw, "model": {**model, "output_bias": "init"}}
        model = raw["model"]
    if isinstance(model, dict) and "init" not in model:
        raw = {**raw, "model": {**model, "init": "torch"}}
        if isinstance(latent, dict) and latent.get("flow") == "iaf":
            raw["latent"] = {**latent, "flow": "iaf_gated"}
        if isinstance(objective, dict):  # label keys holding that time's defaults where they do not apply
            labeled = isinstance(data, dict) and bool(data.get("labeled"))
            unused: dict[str, Any] = {"label_baseline": "moving_average"} if not labeled or objective.get("labels") != "score" else {}
            unused.update({"label_temperature": 0.5} if not labeled or objective.get("labels") != "relaxed" else {})
            raw["objective"] = {k: v for k, v in objective.items() if not (k in unused and v == unused[k])}
    return from_dict(raw)


def parse_value(text: str) -> Any:
    """TOML literal if it parses (``50``, ``1e-3``, ``[200, 200]``, ``true``), else the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``section.key=value`` (or ``seed=N``) to nested dicts in place."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {assignment!r} is not key=value (e.g. latent.dim=16)")
    parts = key.split(".")
    if len(parts) > 2 or (len(parts) == 1 and key != "seed"):
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}")
    if len(parts) == 1:
        raw["seed"] = parse_value(text)
        return
    section = raw.setdefault(parts[0], {})
    if not isinstance(section, dict):
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}")
    section[parts[1]] = parse_value(text)


def load(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read an optional TOML file, apply overrides, validate."""
    return from_dict(load_raw(path, overrides))


def load_raw(path: str | Path | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The optional TOML file with the overrides applied, as nested dicts, not yet validated
    (``reparam.train.members`` reads lists over a key from it)."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"config file {p} is a folder; name a .toml file (a run folder is continued with --resume)")
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            raw = tomllib.loads(p.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
    for assignment in overrides:
        apply_override(raw, assignment)
    return raw
