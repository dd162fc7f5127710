"""Time the explorer's decode endpoint end to end (HTTP request, decoder, PNG) on a run.

    python benchmarks/explore.py [RUN] [--n 200]

Without RUN, trains the bundled default (``reparam train`` on digits) first. Writes the
median and 95th percentile per request, in milliseconds, to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from reparam import config  # noqa: E402
from reparam.explore import Explorer, make_server  # noqa: E402
from reparam.train import train  # noqa: E402


def measure(run: str, n: int) -> tuple[float, float]:
    ex = Explorer.open(run)
    server = make_server(ex, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn = http.client.HTTPConnection(*server.server_address[:2])
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(n):
        z = ex.centre + torch.randn(ex.dim, generator=g)
        start = time.perf_counter()
        conn.request("GET", "/api/decode.png?z=" + ",".join(f"{float(v):.4f}" for v in z))
        assert conn.getresponse().read().startswith(b"\x89PNG")
        times.append(1000 * (time.perf_counter() - start))
    conn.close()
    server.shutdown()
    server.server_close()
    return statistics.median(times), statistics.quantiles(times, n=20)[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", nargs="?", help="a finished run (default: train the bundled default first)")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    run = a.run or str(train(config.load(None, ["train.progress=false"]), Path(tempfile.mkdtemp(prefix="explore-")) / "run"))
    model = Explorer.open(run).model
    median, p95 = measure(run, a.n)
    what = "a given run" if a.run else "the bundled default run (`reparam train`, digits)"
    md = f"""Command: `python benchmarks/explore.py{' RUN' if a.run else ''} --n {a.n}`. One `GET /api/decode.png?z=...`
per request over a kept-alive loopback connection, at random latents around the posterior centre:
parse, decode on the CPU, PNG encode, reply. Model: {what}, {model.family.name} latent of
dimension {model.family.dim}, images {"x".join(map(str, model.x_shape))}.

| requests | median ms | 95th percentile ms |
|---|---|---|
| {a.n} | {median:.2f} | {p95:.2f} |
"""
    common.publish("explore", md, write=not a.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
