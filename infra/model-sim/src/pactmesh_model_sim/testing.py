"""The simulator in a test: a real HTTP server on a free loopback port, and its admin API.

The server runs in a thread with its own event loop, so a test's clients reach it over
real sockets (the path a deployed model client takes) and a slow simulated answer never
holds up the test's own loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from pactmesh_model_sim.app import create_app
from pactmesh_model_sim.settings import Settings


@contextmanager
def serve_in_thread(app: ASGIApp | None = None, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` (by default a fresh simulator whose default scenario is ``fill``, so
    wire-format tests read a known text) on a free port; yields its base URL, e.g.
    ``http://127.0.0.1:41234``; the server stops when the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app or create_app(Settings(scenario="fill")),
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="model-sim", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the model simulator did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class SimAdmin:
    """The simulator's ``/sim`` API for tests (synchronous: it is quick and local)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.openai_base_url = f"{base_url}/v1"
        """What an OpenAI client's ``base_url`` should be."""
        self._http = httpx.Client(base_url=base_url, timeout=10)

    def configure(self, model: str | None = None, **config: Any) -> None:
        """Replace the config (see ``SimConfig``) for every model, or for ``model``."""
        path = "/sim/config" if model is None else f"/sim/config/models/{model}"
        self._http.put(path, json=config).raise_for_status()

    def reset(self) -> None:
        """Start-up config, no overrides, empty stats and request log."""
        self._http.post("/sim/reset").raise_for_status()

    def stats(self) -> dict[str, Any]:
        """``GET /sim/stats``."""
        response = self._http.get("/sim/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def requests(self) -> list[dict[str, Any]]:
        """``GET /sim/requests``: the bodies received, oldest first, with outcomes."""
        response = self._http.get("/sim/requests")
        response.raise_for_status()
        logged: list[dict[str, Any]] = response.json()
        return logged

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()


# Fixtures for the test suites that drive a real simulator (this package's and the
# reasoning package's); a conftest imports them by name.
@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """A simulator on a free port for this test module (a real uvicorn server)."""
    with serve_in_thread() as url:
        yield url


@pytest.fixture
def sim(sim_url: str) -> Iterator[SimAdmin]:
    """The simulator's admin API, reset before each test."""
    admin = SimAdmin(sim_url)
    admin.reset()
    yield admin
    admin.close()
