"""The run folder: its layout, and loading the VAE a run trained.

Layout of a run folder::

    config.json          the resolved config
    metrics.jsonl        one JSON object per held-out evaluation
    model.safetensors    the VAE's weights (the newest checkpoint's)
    state.json           step, epoch, image shape and the newest checkpoint's name
    checkpoints/         the newest few full training states (see reparam.train.checkpoint)
    summary.json         final test metrics
    samples.png, reconstructions.png, report.html, figures/
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
#: reparam 0.1 saved a score-function baseline's weights beside the VAE's; they now belong to
#: the training objective (its checkpoint entry), and loading a VAE skips them.
LEGACY_BASELINE = "baseline."


def prepare_run_dir(out: str | Path, overwrite: bool) -> Path:
    """Create ``out``; refuse a folder that already holds a run unless ``overwrite``."""
    out = Path(out)
    if (out / CONFIG).exists() and not overwrite:
        raise RunError(f"{out} already holds a run; choose another --out or pass --overwrite")
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
    """The run's config.json as a validated Config (RunError naming the file if it is not one)."""
    from . import config

    try:
        return config.from_dict(read_json(run_dir / CONFIG))
    except RunError:
        raise
    except ReparamError as e:
        raise RunError(f"{run_dir / CONFIG}: {e}") from None


def check_run_dir(run_dir: str | Path) -> Path:
    """The run folder as a Path; RunError when it is missing or a file."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise RunError(f"{run_dir} is a file, not a run folder")
    if not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} does not exist")
    return run_dir


def load(run_dir: str | Path, device: str = "cpu"):
    """Rebuild the VAE of a finished or running run folder, in eval mode.

    Raises RunError for a missing folder or a checkpoint that fails validation.
    """
    from . import model as model_mod

    run_dir = check_run_dir(run_dir)
    cfg = read_config(run_dir)
    info = read_json(run_dir / STATE_JSON) if (run_dir / STATE_JSON).exists() else {}
    x_shape = tuple(info.get("x_shape") or ())
    if not x_shape:
        raise RunError(f"{run_dir} has no checkpoint yet ({STATE_JSON} is missing)")
    vae = model_mod.build(cfg, x_shape)
    tensors = {k: v for k, v in load_tensors(run_dir / WEIGHTS).items() if not k.startswith(LEGACY_BASELINE)}
    check_state_dict(vae, tensors, run_dir / WEIGHTS)
    vae.load_state_dict(tensors)
    vae.config = cfg
    return vae.to(device).eval()
