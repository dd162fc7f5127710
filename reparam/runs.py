"""The run folder: its layout, and loading the VAE a run trained.

Layout of a run folder::

    config.json          the resolved config
    metrics.jsonl        one JSON object per held-out evaluation
    model.safetensors    the VAE's weights (the newest checkpoint's)
    state.json           step, epoch, image shape and the newest checkpoint's name
    checkpoints/         the newest few full training states (see reparam.checkpoint)
    summary.json         final test metrics
    samples.png, reconstructions.png, report.html, figures/
    columns.json         (a table) each column's name, kind, statistics and labels
    samples.csv          (a table) decoded prior samples in original units
    tracking.json        with train.log: the MLflow and W&B run ids (see reparam.train.tracking)
    tensorboard/, wandb/ with train.log: TensorBoard's event files, W&B's files (unless WANDB_DIR)

Nothing here unpickles: weights are safetensors and metadata is JSON (``files.py``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import ReparamError, RunError
from .files import atomic_write_bytes, load_tensors, read_json, read_jsonl, save_tensors, write_json  # noqa: F401  (re-exported)

CONFIG, METRICS, WEIGHTS, STATE_JSON, SUMMARY = "config.json", "metrics.jsonl", "model.safetensors", "state.json", "summary.json"
CHECKPOINTS = "checkpoints"
MEMBERS = "members.json"  # an ensemble's folder: its members' names and settings (reparam.train.members)
COLUMNS = "columns.json"
CLASSES = "classes.json"
#: A conditional VAE's label input, (raw size, C): its columns count the classes its weights were trained on.
LABEL_IN = "label_in.weight"
#: What RUN/classes.json holds, as its errors say it.
CLASSES_SHAPE = '{"classes": [...]}, one name (a string) per class, in the order of the class indices'
#: reparam 0.1 saved a score-function baseline's weights beside the VAE's; they now belong to
#: the training objective (its checkpoint entry), and loading a VAE skips them.
LEGACY_BASELINE = "baseline."


def prepare_run_dir(out: str | Path, overwrite: bool) -> Path:
    """Create ``out``; refuse a folder that already holds a run unless ``overwrite``."""
    out = Path(out)
    if (out / CONFIG).exists() and not overwrite:
        if untrained(out):
            raise RunError(f"{out} holds a run that stopped before its first checkpoint (nothing was trained); start it with: "
                           f"reparam train --resume {out} (its config.json), or choose another --out, or pass --overwrite")  # fmt: skip
        raise RunError(f"{out} already holds a run; continue it with: reparam train --resume {out}, or choose another --out, or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write to {out}: {e.strerror or e}; choose another --out") from None
    return out


def untrained(run_dir: Path) -> bool:
    """Whether a run folder's run stopped before its first checkpoint (killed, out of memory, a
    full disk): config.json, but no checkpoint, no weights and no evaluation. Nothing was trained
    and nothing is lost by starting it from step 0."""
    done = [run_dir / WEIGHTS, run_dir / METRICS, run_dir / SUMMARY, *(run_dir / CHECKPOINTS).glob("step-*.safetensors")]
    return (run_dir / CONFIG).is_file() and not any(p.exists() for p in done)


def write_weights(run_dir: Path, model: torch.nn.Module, step: int, epoch: int, x_shape: list[int], checkpoint: str) -> None:
    """model.safetensors and state.json for ``reparam.load``: the VAE at ``step``, and the checkpoint it mirrors."""
    save_tensors(run_dir / WEIGHTS, model.state_dict(), {"step": str(step)})
    write_json(run_dir / STATE_JSON, {"step": step, "epoch": epoch, "x_shape": x_shape, "checkpoint": checkpoint})


def check_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights whose names or shapes do not match the model the config builds."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise RunError(f"{path} does not match config.json ({what}); refusing to load it")
    for key, value in expected.items():
        if tensors[key].shape != value.shape:
            raise RunError(
                f"{path}: {key} has shape {tuple(tensors[key].shape)}, config.json needs "
                f"{tuple(value.shape)}; refusing to load it"
            )


def read_config(run_dir: Path):
    """The run's config.json as a validated Config (RunError naming the file if it is not one, or
    naming the members of an ensemble's folder, which has none of its own)."""
    from . import config

    run_dir = Path(run_dir)
    if (run_dir / MEMBERS).is_file() and not (run_dir / CONFIG).is_file():
        names = [m["name"] for m in read_json(run_dir / MEMBERS)["members"]]
        raise RunError(f"{run_dir} holds {len(names)} runs trained together ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}); "
                       f"name one of them, e.g. {run_dir / names[0]}")  # fmt: skip

    try:
        return config.from_saved(read_json(run_dir / CONFIG))
    except RunError:
        raise
    except ReparamError as e:
        raise RunError(f"{run_dir / CONFIG}: {e}") from None


def write_columns(run_dir: Path, columns) -> None:
    """RUN/columns.json: a table's columns (``reparam.tables.Columns``), so eval and sample code rows as training did."""
    write_json(run_dir / COLUMNS, columns.to_json())


def read_columns(run_dir: Path, cfg):
    """The run's ``reparam.tables.Columns`` for a table run (RunError if columns.json is gone), else None."""
    if cfg.data.name != "table":
        return None
    from .tables import Columns

    try:
        return Columns.from_json(read_json(run_dir / COLUMNS), str(run_dir / COLUMNS))
    except ReparamError as e:
        raise RunError(str(e)) from None


def read_classes(run_dir: Path, cfg) -> list[str] | None:
    """A conditional run's class names (RUN/classes.json), else None; RunError naming the file
    and what it must hold if it is gone or holds anything but distinct names."""
    if cfg.model.condition != "label":
        return None
    path = run_dir / CLASSES
    if not path.exists():
        raise RunError(f"{path} is missing: the run is conditional and its class names were saved there")
    held = read_json(path)
    names = held.get("classes") if isinstance(held, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RunError(f"{path} must hold {CLASSES_SHAPE}; it holds {_describe(held)}")
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise RunError(f"{path} names class {twice} twice; it must hold {CLASSES_SHAPE}")
    return names


def _describe(held) -> str:
    """What a JSON value is, in a few words, for an error."""
    if isinstance(held, dict):
        return "an object without a non-empty list of strings under classes"
    return {list: "a JSON list", str: "a JSON string", bool: "true or false", type(None): "null"}.get(type(held), "a number")


def check_classes(names: list[str], tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse class names whose number differs from the classes the weights were trained on."""
    trained = tensors.get(LABEL_IN)
    if trained is not None and trained.dim() == 2 and trained.shape[1] != len(names):
        raise RunError(f"{path} names {len(names)} classes; the run's weights were trained on {trained.shape[1]}: it must hold {CLASSES_SHAPE}")


def load_data(run_dir: str | Path, cfg):
    """The run's data (``reparam.data.Data``); a table coded with the run's saved columns."""
    from . import data

    columns = read_columns(local(run_dir), cfg)
    return data.load(cfg.data) if columns is None else data.load(cfg.data, columns)


def local(run_dir: str | Path) -> Path:
    """The run folder as a Path; a Hub run ``hf://user/repo[@revision]`` is fetched into the Hub's
    cache first (``reparam.share.hub``)."""
    from .share import hub

    return hub.download(str(run_dir)) if hub.is_hub(run_dir) else Path(run_dir)


def check_run_dir(run_dir: str | Path) -> Path:
    """The run folder as a Path; RunError when it is missing or a file."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise RunError(f"{run_dir} is a file, not a run folder")
    if not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} does not exist")
    return run_dir


def load(run_dir: str | Path, device: str = "cpu"):
    """Rebuild the VAE of a finished or running run folder (or a Hub run, ``hf://user/repo[@revision]``), in eval mode.

    Raises RunError for a missing folder or a checkpoint that fails validation. A table
    run's model carries its ``columns`` (``reparam.tables.Columns``; None for images).
    """
    from .model.build import assemble

    run_dir = check_run_dir(local(run_dir))
    cfg = read_config(run_dir)
    info = read_json(run_dir / STATE_JSON) if (run_dir / STATE_JSON).exists() else {}
    x_shape = tuple(info.get("x_shape") or ())
    if not x_shape:
        raise RunError(f"{run_dir} has no checkpoint yet ({STATE_JSON} is missing)")
    columns = read_columns(run_dir, cfg)
    names = read_classes(run_dir, cfg)
    tensors = {k: v for k, v in load_tensors(run_dir / WEIGHTS).items() if not k.startswith(LEGACY_BASELINE)}
    if names is not None:
        check_classes(names, tensors, run_dir / CLASSES)
    # assembled without model.init's start: the saved weights replace every one of them just below
    vae = assemble(cfg, x_shape, columns=None if columns is None else columns.layout(), classes=None if names is None else len(names))
    check_state_dict(vae, tensors, run_dir / WEIGHTS)
    vae.load_state_dict(tensors)
    vae.config, vae.columns, vae.class_names = cfg, columns, names
    return vae.to(device).eval()
