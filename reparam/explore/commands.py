"""``reparam explore RUN [--host H] [--port N] [--allow-remote]``: the latent-space explorer."""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_PORT = 8765


def cmd_explore(a: argparse.Namespace) -> int:
    from .server import make_server, resolve
    from .session import Explorer

    resolve(a.host, a.allow_remote)  # refuse a remote bind before loading anything
    server = make_server(Explorer.open(a.run), a.host, a.port, a.allow_remote)
    server.verbose = a.verbose
    print(f"exploring {a.run} at {server.url}  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    # Leave without the interpreter's teardown: with request threads that ran torch, it aborted
    # one exit in several full test runs ("terminate called without an active exception", exit
    # -6). Nothing is left to write: the server wrote no files and the output is flushed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def add_commands(sub) -> None:
    e = sub.add_parser("explore", help="a local web page to move through a run's latent space")
    e.add_argument("run", metavar="RUN", help="run folder")
    e.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    e.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    e.add_argument("--allow-remote", action="store_true", help="allow a --host that other machines can reach")
    e.add_argument("--verbose", action="store_true", help="log every request")
    e.set_defaults(func=cmd_explore)
