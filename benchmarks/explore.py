"""Time the explorer's decode endpoint end to end (HTTP request, decoder, PNG) on a run.

    python docs/measure_explore.py RUN [--n 200]

Prints the median and 95th percentile per request, in milliseconds.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time

import torch

from reparam.explore import Explorer, make_server


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


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--n", type=int, default=200)
    a = p.parse_args()
    median, p95 = measure(a.run, a.n)
    print(f"decode request: median {median:.2f} ms, p95 {p95:.2f} ms over {a.n} requests")
