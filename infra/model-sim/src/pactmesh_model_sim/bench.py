"""``python -m pactmesh_model_sim.bench``: the simulator's throughput.

Starts the simulator in a subprocess on a free loopback port (or uses ``--url``), with
zero latency and no faults, and sends ``--requests`` non-streaming chat completions from
``--concurrency`` concurrent clients (one ``httpx.AsyncClient`` each). Prints one JSON
object: requests per second and latency percentiles as the clients saw them. The load
generator shares the machine with the server, so the figure is a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

_REQUEST = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Refund $120.50 for order ORD-4411"}],
}


@contextmanager
def _server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PACTMESH_MODEL_SIM_PORT": str(port), "PACTMESH_MODEL_SIM_CONFIG": "{}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pactmesh_model_sim"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _load(url: str, *, requests: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for _ in remaining:
                started = time.perf_counter()
                response = await http.post("/v1/chat/completions", json=_REQUEST)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


def main() -> None:
    """Run the benchmark and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--url", help="a running simulator (its config is left as it is)")
    args = parser.parse_args()
    if args.url:
        result = asyncio.run(_load(args.url, requests=args.requests, concurrency=args.concurrency))
    else:
        with _server() as url:
            result = asyncio.run(_load(url, requests=args.requests, concurrency=args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
