"""Serving an ASGI app over real sockets inside a test's event loop.

In-process ``httpx.ASGITransport`` has no sockets, so it cannot show a dropped
connection or a client-side timeout; tests that need those run the sandbox here.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send


@asynccontextmanager
async def served(app: ASGIApp, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``app`` under uvicorn on a free port of ``host``; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class SandboxAdmin:
    """The sandbox's admin endpoints (faults, ledger) for tests, over any httpx client."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def set_faults(self, backend: str, **config: Any) -> None:
        """Replace ``backend``'s faults (see ``FaultConfig``); no arguments heal it."""
        response = await self.http.put(f"/faults/{backend}", json=config)
        response.raise_for_status()

    async def reset_faults(self) -> None:
        """Heal every backend."""
        (await self.http.delete("/faults")).raise_for_status()

    async def faults(self) -> dict[str, dict[str, Any]]:
        """Every backend's faults, with what is left of its counters."""
        response = await self.http.get("/faults")
        response.raise_for_status()
        configs: dict[str, dict[str, Any]] = response.json()
        return configs

    async def ledger(self, **params: Any) -> list[dict[str, Any]]:
        """Ledger entries, filtered by ``kind``, ``idempotency_key`` or ``limit``."""
        response = await self.http.get("/ledger", params=params)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries


class Recorder:
    """ASGI wrapper around the sandbox counting the requests each backend receives
    (by first path segment: ``kb``, ``crm``, ``carriers``...) and the most in flight."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["path"].split("/")[1]
        self.requests[head] = self.requests.get(head, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
