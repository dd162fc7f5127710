"""``reparam eval RUN`` (held-out metrics; with --disentanglement, MIG, DCI, SAP and the FactorVAE
score against the data's known factors) and ``reparam gradvar RUN_OR_CONFIG`` (the gradient lab).

``gradvar`` prints a table, writes gradvar.json and gradvar.png (variance and SNR per
estimator and layer group, log scale) into --out (default: the run folder, or the current
folder for a config), or with --json prints the JSON object instead of the table. In a run
folder by default it rewrites them; anywhere else an existing one is replaced only with
--overwrite.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import ReparamError, check_seed
from ..files import atomic_write_bytes, check_output

DEFAULT_BATCH = 100  # gradvar's minibatch: the first images of the training set
DEFAULT_K = 1000  # eval's importance samples per image


def disentangle_choices(name: str) -> tuple[str, ...]:
    from . import disentangle

    return getattr(disentangle, name)


def cmd_eval(a: argparse.Namespace) -> int:
    from .. import devices, runs
    from ..share import hub
    from . import metrics

    check_seed("--seed", a.seed)
    if a.disentanglement:
        return cmd_disentanglement(a)
    given = [f"--{k.replace('_', '-')}" for k in DISENTANGLE_FLAGS if getattr(a, k) is not None]
    if given:
        raise ReparamError(f"{given[0]} applies to --disentanglement only; add --disentanglement or drop it")
    if a.k < 1:
        raise ReparamError(f"--k must be >= 1, got {a.k}")
    run = runs.local(a.run)  # a Hub run fetched once, for the model and its data
    model = runs.load(run)
    source = runs.load_data(run, model.config)
    if a.sample_quality:
        from . import quality

        quality.check(model, source)  # a table, no labels or no torchmetrics: refused before any work
    threads = devices.Threads(model.config.train.threads)  # the run's setting: N, or auto (timed trials)
    y = source.test_labels if model.classes else None
    if threads.due():
        probe = model if y is None else model.given(y[: metrics.DRAW_EXAMPLES])
        threads.tune(lambda: metrics.log_likelihood(probe, source.test[: metrics.DRAW_EXAMPLES], 32))
    out = metrics.evaluate(model, source.test, a.k, seed=a.seed, precision=a.precision, nll_shift=source.nll_shift, y=y, progress=None)
    if a.sample_quality:
        out["sample_quality"] = quality.measure(model, source, seed=a.seed)  # a note on stderr when its extractor is trained
        if not hub.is_hub(a.run):  # a Hub run's files are the Hub's cache, not a folder of the user's: printed only
            runs.write_json(Path(a.run) / quality.QUALITY_JSON, out["sample_quality"])  # RUN/sample_quality.json: rewritten at every call
    if a.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    print(f"test set     {out['n']} {'images' if model.columns is None else 'rows'}, k = {out['k']} importance samples ({out['precision']} decoder)")
    print(f"model        {out['model']}")
    if "labels" in out:
        print(f"labels       {out['labels']}")
    _print_scores(out)
    if "classification_error" in out:
        print(f"error        {100 * out['classification_error']:.2f} ± {100 * out['classification_error_se']:.2f} % of test images misclassified by q(y|x)")
    if "nll_original_units" in out:
        shift = out["nll_original_units"] - out["nll"]
        print(f"{'orig. units':<13}NLL {out['nll_original_units']:.3f}, ELBO {out['elbo_original_units']:.3f} nats per row "
              f"(real columns in their own units: NLL + sum_j log std_j = NLL {shift:+.3f})")  # fmt: skip
    for key in ("discrete", "objective"):
        if key in out:
            block = out[key]
            print(f"{key + ':':<13}{block['what']}" + (f" ({block['model']})" if "model" in block else ""))
            _print_scores(block, indent="  ")
    print(f"active units {out['active_units']} of {out['latent_dim']} (Cov_x E_q[z_d] > 0.01)")
    if out["mi"] is None:
        print("I(x; z)      - (a flow posterior's density is known at its own draws only)")
    else:
        print(f"I(x; z)      {out['mi']:.3f} ± {out['mi_se']:.3f} nats (at most log N = {out['mi_max']:.3f})")
        print(f"KL(q(z)||p)  {out['kl_marginal']:.3f} nats (aggregate posterior vs prior)")
    if out["kl_per_dim"] is not None:
        print("KL per dim   " + " ".join(f"{v:.2f}" for v in out["kl_per_dim"]))
    if a.sample_quality:
        print("\n".join([*quality.lines(out["sample_quality"]), *([] if hub.is_hub(a.run) else [str(Path(a.run) / quality.QUALITY_JSON)])]))
    return 0


#: eval's options of --disentanglement (None: not given), and the Options fields they set
DISENTANGLE_FLAGS = ("codes", "repetitions", "points", "bins", "dci", "sap", "votes")


def cmd_disentanglement(a: argparse.Namespace) -> int:
    """``reparam eval RUN --disentanglement``: the metrics on all the run's images (training and
    test), whose factors the data keep; a run whose data have none is refused."""
    import torch

    from .. import runs
    from ..data import unit
    from . import disentangle

    if a.sample_quality:
        raise ReparamError("--sample-quality and --disentanglement are two evaluations; run reparam eval once with each")
    if a.k != DEFAULT_K or a.precision != "fp32":
        raise ReparamError("--k and --precision set the importance-sampled log-likelihood, which --disentanglement does not compute; drop them")
    opts = disentangle.Options(seed=a.seed, **{k: getattr(a, k) for k in DISENTANGLE_FLAGS if getattr(a, k) is not None})
    opts.check()
    run = runs.local(a.run)  # a Hub run fetched once, for the model and its data
    model = runs.load(run)
    source = runs.load_data(run, model.config)
    if source.factors is None:
        raise ReparamError(f"{a.run}'s data ({source.name}) carry no known factors to score against; train on data.name=shapes")
    if model.classes:
        raise ReparamError(f"{a.run} is a conditional run (model.condition=label); --disentanglement scores the codes of unconditional models")
    f = source.factors
    parts = [(unit(source.train), f.train), (source.valid, f.valid), (source.test, f.test)]  # every image: training, validation, test
    x, factors = (torch.cat([p[i] for p in parts if p[0] is not None]) for i in (0, 1))
    out = disentangle.disentanglement(model, x, factors, f.names, f.sizes, opts)
    print(json.dumps(out, sort_keys=True) if a.json else disentangle.describe(out))
    return 0


def _print_scores(out: dict, indent: str = "") -> None:
    """The ELBO line, and the NLL and ESS lines where the block has them."""
    w = 13 - len(indent)
    print(f"{indent}{'ELBO':<{w}}{out['elbo']:.3f} nats  (log p(x|z) {out['log_px_z']:.3f}, KL {out['kl']:.3f})")
    if "nll" in out:
        print(f"{indent}{'NLL':<{w}}{out['nll']:.3f} ± {out['nll_se']:.3f} nats   ({out['bits_per_dim']:.4f} bits/dim)")
        print(f"{indent}{'ESS':<{w}}{out['ess']:.1f} of {out['k']}")


def table(result: dict) -> str:
    """A plain-text table: one row per estimator."""
    head = f"{'estimator':<22}{'variance':>11}{'SNR':>9}{'SNR enc':>9}{'SNR dec':>9}{'cos(pw)':>9}{'ms/est':>9}"
    lines = [
        f"{result['objective']} bound, K = {result['k']}, batch {result['batch']}, {result['replicates']} estimates each",
        head,
    ]
    for name, r in result["estimators"].items():
        g, cos = r["groups"], r["cosine_pathwise"]
        lines.append(
            f"{name:<22}{r['variance']:>11.3e}{r['snr']:>9.3f}{g['encoder']['snr']:>9.3f}{g['decoder']['snr']:>9.3f}"
            f"{'-' if cos is None else format(cos, '.3f'):>9}{1000 * r['seconds_per_estimate']:>9.1f}"
        )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path:
    """Bars of gradient variance and SNR per estimator, encoder and decoder, log scale (written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["estimators"])
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.6 * len(names) + 2), 3.4))
    for ax, key in zip(axes, ("variance", "snr")):
        for i, group in enumerate(("encoder", "decoder")):
            vals = [result["estimators"][n]["groups"][group][key] for n in names]
            xs = [j + (i - 0.5) * 0.38 for j in range(len(names))]
            ax.bar(xs, [v if v and math.isfinite(v) and v > 0 else float("nan") for v in vals], width=0.38, label=group)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title("gradient variance (mean over parameters)" if key == "variance" else "SNR |mean| / std", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_target(path: str, batch: int | None, seed: int = 0, overrides: list[str] | tuple = ()):
    """(model, config, x, baseline state): a run folder's model and its trained objective
    state (from the newest checkpoint), or a TOML config's model at initialization (with
    ``key=value`` overrides, as for ``reparam train``)."""
    import torch

    from .. import checkpoint, config, objectives, runs
    from .. import data as data_mod
    from ..model import build
    from .gradvar import fixed_batch

    p = Path(path)
    if p.is_dir():
        if overrides:
            raise ReparamError(f"key=value overrides apply to a config file, not to the run folder {path}")
        model = runs.load(p)
        cfg = model.config
        if model.classes:
            raise ReparamError(f"{path} is a conditional run (model.condition=label); the gradient lab measures unconditional models")
        x_train = runs.load_data(p, cfg).train
        objective = objectives.Objective(cfg.objective, model.x_shape)
        if objective.baseline is not None and checkpoint.list_checkpoints(p):
            objective.load_state_dict(checkpoint.latest_state(p)["objective"])
    elif p.is_file():
        cfg = config.load(p, overrides)
        if cfg.model.condition != "none":
            raise ReparamError(f"{path} configures a conditional model (model.condition=label); the gradient lab measures unconditional models")
        source = data_mod.load(cfg.data)
        x_train = source.train
        torch.manual_seed(cfg.seed)
        model = build(cfg, tuple(x_train.shape[1:]), columns=None if source.columns is None else source.columns.layout(), train_x=x_train)
        objective = objectives.Objective(cfg.objective, model.x_shape)
    else:
        raise ReparamError(f"{path} is neither a run folder nor a config file")
    if batch is not None and batch > len(x_train):
        raise ReparamError(f"--batch {batch} exceeds the {len(x_train)} training images; choose at most {len(x_train)}")
    return model, cfg, fixed_batch(x_train, cfg, DEFAULT_BATCH if batch is None else batch, seed), objective.baseline


def parse_specs(text: str) -> list[str]:
    """--estimators a,b,c as a list; ReparamError for none, or one named twice."""
    specs = [s.strip() for s in text.split(",") if s.strip()]
    if not specs:
        raise ReparamError(f"--estimators {text!r} names no estimator; e.g. --estimators pathwise,score")
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise ReparamError(f"--estimators names {repeated[0]!r} twice; name each estimator once")
    return specs


def cmd_gradvar(a: argparse.Namespace) -> int:
    from .. import runs
    from ..objectives import estimators
    from .gradvar import check_specs, default_specs, measure

    if a.replicates < 2:
        raise ReparamError(f"--replicates must be >= 2 (a variance needs two estimates), got {a.replicates}")
    if (a.batch is not None and a.batch < 1) or (a.k is not None and a.k < 1):
        raise ReparamError("--batch and --k must be >= 1")
    check_seed("--seed", a.seed)
    in_run = a.out is None and Path(a.target).is_dir()  # the run folder's own gradvar files: rewritten at every call
    out = Path(a.out) if a.out else (Path(a.target) if in_run else Path("."))
    if not out.is_dir():
        raise ReparamError(f"--out {out} is {'a file' if out.exists() else 'no folder'}; name an existing folder for gradvar.json and gradvar.png")
    for name in ("gradvar.json", "gradvar.png"):
        check_output(out / name, a.overwrite or in_run)
    model, cfg, x, state = load_target(a.target, a.batch, a.seed, a.settings)
    k = a.k or cfg.objective.k
    has, mismatch, everywhere = estimators.has_rsample(model.family), model.family.kl_mismatch(), model.density_everywhere
    specs = parse_specs(a.estimators) if a.estimators is not None else default_specs(has, cfg.objective, k, mismatch, everywhere)
    check_specs(specs, has, cfg.objective, k, cfg.latent.family, mismatch, everywhere)
    import torch

    torch.manual_seed(a.seed)
    result = measure(model, cfg.objective, x, specs, a.replicates, k, state=state)
    runs.write_json(out / "gradvar.json", result)
    plot(result, out / "gradvar.png")
    print(json.dumps(result, sort_keys=True) if a.json else table(result) + f"\n{out / 'gradvar.json'}\n{out / 'gradvar.png'}")
    return 0


def add_commands(sub) -> None:
    e = sub.add_parser("eval", help="test ELBO and importance-sampled log-likelihood of a run")
    e.add_argument("run")
    e.add_argument("--k", type=int, default=DEFAULT_K, help=f"importance samples per image (default {DEFAULT_K})")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32",
        help="decoder matmuls in bfloat16: ~1.3x faster IS on a CPU with AVX512-BF16; log p(x) moves by ~0.01 nats (default fp32)",
    )  # fmt: skip
    e.add_argument("--seed", type=int, default=0, help="seed of the ELBO's and the importance samples' draws (with --disentanglement: of the points and votes): the same seed, the same numbers (default 0)")
    e.add_argument("--sample-quality", action="store_true", help="also FID, KID and precision/recall of decoded prior draws against the test images, "
                   "through a classifier of the run's images trained on first use (needs: pip install 'reparam[quality]'); written to RUN/sample_quality.json")  # fmt: skip
    d = e.add_argument_group("disentanglement (data with known factors, e.g. data.name=shapes)")
    d.add_argument("--disentanglement", action="store_true", help="MIG, DCI, SAP and the FactorVAE score of the codes against the data's factors, ± SE over repetitions")
    d.add_argument("--codes", choices=disentangle_choices("CODES"), help="posterior means (default) or one draw per image and repetition")
    d.add_argument("--repetitions", type=int, help="independent draws of points and votes (default 5)")
    d.add_argument("--points", type=int, help="points per repetition for MIG, DCI and SAP (a third held out; default 2000)")
    d.add_argument("--bins", type=int, help="MIG: equal-width bins per code dimension (default 20)")
    d.add_argument("--dci", choices=disentangle_choices("DCI_MODELS"), help="DCI's classifier: forest (default) or gbt (gradient-boosted trees, slower)")
    d.add_argument("--sap", choices=disentangle_choices("SAP_MODES"), help="SAP's score: continuous (R^2, default) or discrete (LinearSVC accuracy)")
    d.add_argument("--votes", type=int, help="FactorVAE: training votes per repetition, half as many held out (default 800)")
    e.set_defaults(func=cmd_eval)
    g = sub.add_parser("gradvar", help="gradient variance and SNR of each estimator on one minibatch")
    g.add_argument("target", metavar="RUN_OR_CONFIG", help="a run folder (its checkpoint) or a TOML config (at initialization)")
    g.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="overrides for a config file (e.g. objective.k=5)")
    g.add_argument("--estimators", help="comma-separated, e.g. pathwise,score,score:loo,stl,dreg (default: all that apply)")
    g.add_argument("--replicates", type=int, default=100, help="gradient estimates per estimator (default 100)")
    g.add_argument("--batch", type=int, help=f"minibatch size (default {DEFAULT_BATCH}, or the training set if smaller)")
    g.add_argument("--k", type=int, help="samples per example (default: the config's objective.k)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", help="folder for gradvar.json and gradvar.png (default: the run folder, where they are rewritten at every "
                                 "call, or .); existing ones elsewhere are replaced only with --overwrite")  # fmt: skip
    g.add_argument("--overwrite", action="store_true", help="replace an existing gradvar.json and gradvar.png in --out (never a device, FIFO or socket)")
    g.add_argument("--json", action="store_true", help="print the JSON object instead of the table")
    g.set_defaults(func=cmd_gradvar)
