"""The ``reparam`` command line. User errors end in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import warnings

from .errors import ReparamError

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"reparam: error: {message} (see {self.prog} --help)\n")


#: Modules that add subcommands: each defines ``add_commands(sub)``, where ``sub`` is the
#: argparse subparsers object; each command sets ``func(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = (
    "reparam.train.command", "reparam.evaluate.commands", "reparam.report.commands", "reparam.explore.commands",
    "reparam.share.commands",
)


def parser() -> Parser:
    from . import __version__

    p = Parser(prog="reparam", description="Variational autoencoders with the reparameterization trick.")
    p.add_argument("--version", action="version", version=f"reparam {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
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


def out_of_memory(e: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, torch's CPU allocator or CUDA out of memory."""
    text = str(e)
    return isinstance(e, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """How the command line shows a warning: ``reparam: warning: <message>``, without the source line."""
    return f"reparam: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    from .errors import Interrupted

    args = parse(argv)
    shown, warnings.formatwarning = warnings.formatwarning, one_line_warning
    try:
        return args.func(args)
    except ReparamError as e:
        print(f"reparam: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as e:  # the file system refused (disk full, permissions): nothing half-written
        where = f" ({e.filename})" if e.filename else ""
        fix = "free space or choose another --out" if e.errno == errno.ENOSPC else "choose another --out"
        print(f"reparam: error: {e.strerror or e}{where}; {fix}", file=sys.stderr)
        return USAGE_ERROR
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        print("reparam: error: out of memory; choose smaller sizes (latent.dim, model.hidden, train.batch_size, --k, --n)", file=sys.stderr)
        return USAGE_ERROR
    except Interrupted as e:
        print(f"reparam: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("reparam: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
