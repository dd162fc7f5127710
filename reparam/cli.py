"""The ``reparam`` command line. User errors end in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from .errors import ReparamError

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(USAGE_ERROR, f"reparam: error: {message} (see {self.prog} --help)\n")


def _split_train_args(args: list[str]) -> tuple[str | None, list[str]]:
    files = [a for a in args if "=" not in a]
    if len(files) > 1:
        raise ReparamError(f"expected at most one config file and key=value overrides, got {files}")
    return (files[0] if files else None), [a for a in args if "=" in a]


def default_out(cfg) -> Path:
    base = Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.data.name}-{cfg.latent.family}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def _resume_epochs(settings: list[str]) -> int | None:
    """--resume takes no config file and no override but train.epochs (to train longer)."""
    from .config import parse_value

    epochs = None
    for item in settings:
        key, _, value = item.partition("=")
        if key != "train.epochs" or not isinstance(parse_value(value), int):
            raise ReparamError(f"--resume takes only train.epochs=N (the run keeps its config.json), got {item!r}")
        epochs = parse_value(value)
    return epochs


def cmd_train(a: argparse.Namespace) -> int:
    from . import config
    from .train import resume, train

    if a.resume:
        run_dir = resume(a.resume, _resume_epochs(a.settings), progress=False if a.quiet else None)
    else:
        path, overrides = _split_train_args(a.settings)
        cfg = config.load(path, overrides)
        if a.quiet:
            cfg.train.progress = False
        run_dir = train(cfg, a.out or default_out(cfg), overwrite=a.overwrite)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the job
        return 0
    summary = json.loads((run_dir / "summary.json").read_text())
    print(
        f"test ELBO {summary['elbo']:.2f} nats, NLL {summary['nll']:.2f} ± {summary['nll_se']:.2f} "
        f"nats (k={summary['k']}), {summary['epochs']} epochs in {summary['train_seconds']:.1f} s"
    )
    print(run_dir)
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    import torch

    from . import data, evaluate, runs

    if a.k < 1:
        raise ReparamError(f"--k must be >= 1, got {a.k}")
    model = runs.load(a.run)
    if model.config.train.threads:  # the run's thread count (one thread beats two on a busy machine)
        torch.set_num_threads(model.config.train.threads)
    test = data.load(model.config.data).test
    out = evaluate.evaluate(model, test, a.k, precision=a.precision)
    if a.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    print(f"test set     {out['n']} images, k = {out['k']} importance samples ({out['precision']} decoder)")
    print(f"model        {out['model']}")
    _print_scores(out)
    for key in ("discrete", "objective"):
        if key in out:
            block = out[key]
            print(f"{key + ':':<13}{block['what']}" + (f" ({block['model']})" if "model" in block else ""))
            _print_scores(block, indent="  ")
    print(f"active units {out['active_units']} of {out['latent_dim']} (Cov_x E_q[z_d] > 0.01)")
    print(f"I(x; z)      {out['mi']:.3f} ± {out['mi_se']:.3f} nats (at most log N = {out['mi_max']:.3f})")
    print(f"KL(q(z)||p)  {out['kl_marginal']:.3f} nats (aggregate posterior vs prior)")
    if out["kl_per_dim"] is not None:
        print("KL per dim   " + " ".join(f"{v:.2f}" for v in out["kl_per_dim"]))
    return 0


def _print_scores(out: dict, indent: str = "") -> None:
    """The ELBO line, and the NLL and ESS lines where the block has them."""
    w = 13 - len(indent)
    print(f"{indent}{'ELBO':<{w}}{out['elbo']:.3f} nats  (log p(x|z) {out['log_px_z']:.3f}, KL {out['kl']:.3f})")
    if "nll" in out:
        print(f"{indent}{'NLL':<{w}}{out['nll']:.3f} ± {out['nll_se']:.3f} nats   ({out['bits_per_dim']:.4f} bits/dim)")
        print(f"{indent}{'ESS':<{w}}{out['ess']:.1f} of {out['k']}")


def cmd_sample(a: argparse.Namespace) -> int:
    from . import pictures, runs

    if a.n < 1:
        raise ReparamError(f"--n must be >= 1, got {a.n}")
    model = runs.load(a.run)
    out = Path(a.out) if a.out else Path(a.run) / "samples.png"
    if not out.parent.is_dir():
        raise ReparamError(f"folder {out.parent} does not exist; create it or choose another --out")
    print(pictures.save_samples(model, out, n=a.n, seed=a.seed))
    return 0


#: Modules that add subcommands: each defines ``add_commands(sub)``, where ``sub`` is the
#: argparse subparsers object; each command sets ``func(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = ("reparam.report.commands", "reparam.explore.commands", "reparam.gradvar_cli")


def parser() -> Parser:
    p = Parser(prog="reparam", description="Variational autoencoders with the reparameterization trick.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    t = sub.add_parser("train", help="train a VAE (digits by default)")
    t.add_argument("settings", nargs="*", help="an optional CONFIG.toml, then key=value overrides")
    t.add_argument("--out", help="run folder (default: runs/<time>-<data>-<family>)")
    t.add_argument("--overwrite", action="store_true", help="reuse a folder that already holds a run")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its newest checkpoint (train.epochs=N to extend)")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="test ELBO and importance-sampled log-likelihood of a run")
    e.add_argument("run")
    e.add_argument("--k", type=int, default=1000, help="importance samples per image (default 1000)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32",
        help="decoder matmuls in bfloat16: ~1.3x faster IS on a CPU with AVX512-BF16; log p(x) moves by ~0.01 nats (default fp32)",
    )  # fmt: skip
    e.set_defaults(func=cmd_eval)
    s = sub.add_parser("sample", help="a PNG grid of decoded prior samples")
    s.add_argument("run")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--out", help="PNG file (default: RUN/samples.png)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sample)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return p


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting train's key=value overrides stand before or after its options."""
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra and args.command == "train" and not any(a.startswith("-") for a in extra):
        args.settings += extra
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from .train import Interrupted

    args = parse(argv)
    try:
        return args.func(args)
    except ReparamError as e:
        print(f"reparam: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as e:  # the file system refused (disk full, permissions): nothing half-written
        where = f" ({e.filename})" if e.filename else ""
        print(f"reparam: error: {e.strerror or e}{where}; free space or choose another --out", file=sys.stderr)
        return USAGE_ERROR
    except Interrupted as e:
        print(f"reparam: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("reparam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
