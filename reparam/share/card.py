"""A run's model card: README.md for the Hub, written from config.json and summary.json.

The card says what was trained (family, likelihood, networks, objective), on what data, the
held-out numbers with their standard errors where summary.json has them (``<key>_se``), how to
load it, and the ``reparam train`` command that reproduces it: the keys whose values differ
from the defaults, which ``config.load`` reads back to the run's own config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import read_json

#: summary.json's numbers shown, in order: (key, label, unit, digits).
ROWS = (
    ("elbo", "ELBO", "nats", 3),
    ("nll", "NLL (importance sampled)", "nats", 3),
    ("bits_per_dim", "bits per dimension", "", 4),
    ("log_px_z", "E_q log p(x|z)", "nats", 3),
    ("kl", "KL(q(z|x) || p(z))", "nats", 3),
    ("mi", "I(x; z)", "nats", 3),
    ("classification_error", "classification error", "", 4),
    ("ess", "effective sample size", "", 1),
)
#: Hub metadata tags every card carries.
TAGS = ("reparam", "vae", "variational-autoencoder", "pytorch")
#: Data sources whose data is a Hub dataset, by ``data.name``.
HUB_DATASETS = {"mnist": "ylecun/mnist"}


def overrides(saved: dict[str, Any]) -> list[str]:
    """The ``key=value`` overrides that turn the default config into the saved one (config.json)."""
    from .. import config
    from ..config_keys import _override_form

    defaults = config.load(None).to_dict()
    out = []
    for section, values in saved.items():
        if not isinstance(values, dict):
            if values != defaults.get(section):
                out.append(f"{section}={_override_form(values)}")
            continue
        base = defaults.get(section, {})
        out += [f"{section}.{k}={_override_form(v)}" for k, v in values.items() if k not in base or base[k] != v]
    return out


def reproduce(saved: dict[str, Any]) -> str:
    """The shell command that trains the same config (values quoted where a shell would split them)."""
    import shlex

    return " ".join(["reparam", "train", *(shlex.quote(o) for o in overrides(saved))])


def metrics_table(summary: dict[str, Any]) -> list[str]:
    """Markdown rows for the numbers summary.json holds, each ``± SE`` where it has ``<key>_se``."""
    lines = ["| metric | value |", "|---|---|"]
    for key, label, unit, digits in ROWS:
        value = summary.get(key)
        if not isinstance(value, (int, float)):
            continue
        se = summary.get(f"{key}_se")
        text = f"{value:.{digits}f}" + (f" ± {se:.{digits}f}" if isinstance(se, (int, float)) else "")
        lines.append(f"| {label.replace('|', chr(92) + '|')} | {text}{' ' + unit if unit else ''} |")
    if "active_units" in summary and "latent_dim" in summary:
        lines.append(f"| active units | {summary['active_units']} of {summary['latent_dim']} |")
    return lines


def front_matter(saved: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """The Hub's YAML metadata block."""
    latent, head = saved["latent"], saved["likelihood"]
    tags = [*TAGS, f"latent-{latent['family']}", f"likelihood-{head['name']}"]
    lines = ["---", "library_name: reparam", "tags:", *(f"- {t}" for t in tags)]
    dataset = HUB_DATASETS.get(saved["data"]["name"])
    if dataset:
        lines += ["datasets:", f"- {dataset}"]
    shown = [key for key, *_ in ROWS if isinstance(summary.get(key), (int, float))]
    return [*lines, "metrics:", *(f"- {k}" for k in shown), "---"]


def data_line(saved: dict[str, Any], summary: dict[str, Any], x_shape: list[int]) -> str:
    data = saved["data"]
    where = f" ({data['path']})" if data.get("path") else ""
    n = summary.get("n_test", summary.get("n"))
    held = f"; numbers on {n} held-out examples" if n else ""
    return f"`data.name={data['name']}`{where}, examples of shape {tuple(x_shape)}, binarization `{data['binarize']}`{held}."


def render(run_dir: Path, repo: str) -> str:
    """The card for the run folder ``run_dir``, to be read as ``hf://repo``."""
    saved, summary = read_json(run_dir / "config.json"), read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
    state = read_json(run_dir / "state.json")
    model, latent, objective = saved["model"], saved["latent"], saved["objective"]
    trained = (
        f"A variational autoencoder: {latent['family']} latents (`latent.dim={latent['dim']}`), a {saved['likelihood']['name']} likelihood, "
        f"{model['arch']} networks (hidden {model['hidden']}, {model['activation']}), trained on the `{objective['name']}` bound "
        f"(k = {objective['k']}) for {state['step']} steps ({state['epoch']} epochs)."
    )
    flow = [f"Posterior flow: `latent.flow={latent['flow']}`."] if latent.get("flow", "none") != "none" else []
    k = summary.get("k")
    numbers = metrics_table(summary) if summary else ["(no summary.json: the run had not finished)"]
    return "\n".join([
        *front_matter(saved, summary), "", f"# {repo.rpartition('/')[2]}", "", trained, *flow, "",
        "## Data", "", data_line(saved, summary, state["x_shape"]), "",
        "## Results (test set)", "", *numbers, "",
        *(["± is one standard error over the test examples" + (f"; the NLL uses k = {k} importance samples." if k else "."), ""] if summary else []),
        "## Use", "", "```python", "import reparam", "", f'vae = reparam.load("hf://{repo}")', "```", "",
        "```", "pip install 'reparam[hub]'", f"reparam eval hf://{repo}", "```", "",
        "`reparam eval` reads the test data the run was trained on again: the bundled digits need nothing, "
        "MNIST and files need the same data on this machine (the same `data.path`).", "",
        "## Reproduce", "", "```", reproduce(saved), "```", "",
        "The weights are `model.safetensors`; every other file is JSON, CSV or PNG. Nothing here is a pickle.", "",
    ])  # fmt: skip
