"""Switchable faults per backend, applied by an ASGI layer outside the whole app.

Faults act before a request reaches its route, so a 5xx, a hang or a drop has created
nothing; only ``fail_after_commit_next`` fails a request after it was served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pactmesh_sandbox.catalog import CARRIERS
from pactmesh_sandbox.models import FaultConfig

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = (
    "kb",
    "crm",
    "procurement",
    "erp",
    *(f"carriers.{carrier}" for carrier in CARRIERS),
    "payments",
    "payer",
)
"""Every backend whose faults can be set; each carrier is a backend of its own."""

Action = Literal["fail", "error", "timeout", "drop"]


def backend_of(path: str) -> str | None:
    """The backend a request path belongs to (``/carriers/oceanic/quotes`` ->
    ``carriers.oceanic``), or ``None`` for the sandbox's own endpoints."""
    parts = path.strip("/").split("/")
    name = f"carriers.{parts[1]}" if parts[0] == "carriers" and len(parts) > 1 else parts[0]
    return name if name in BACKENDS else None


@dataclass(frozen=True)
class Decision:
    """What to do to one request."""

    delay_s: float
    action: Action | None


class FaultInjector:
    """The faults in force, with one seeded random generator per backend."""

    def __init__(self, *, seed: int) -> None:
        self._seed = seed
        self._configs: dict[str, FaultConfig] = {}
        self._rngs: dict[str, random.Random] = {}
        self.reset()

    def reset(self) -> None:
        """Heal every backend and reseed every generator."""
        for backend in BACKENDS:
            self.set(backend, FaultConfig())

    def set(self, backend: str, config: FaultConfig) -> None:
        """Replace ``backend``'s faults and restart its random sequence."""
        self._configs[backend] = config
        self._rngs[backend] = random.Random(f"{self._seed}:{backend}")

    def configs(self) -> dict[str, FaultConfig]:
        """Every backend's faults, with the counters left."""
        return dict(self._configs)

    def decide(self, backend: str) -> Decision:
        """Draw this request's fate. Always two draws, so the sequence stays reproducible
        whichever way each request goes."""
        config, rng = self._configs[backend], self._rngs[backend]
        delay_s = (config.latency_ms + rng.random() * config.latency_jitter_ms) / 1000
        draw = rng.random()
        if config.fail_next:
            self._configs[backend] = config.model_copy(update={"fail_next": config.fail_next - 1})
            return Decision(delay_s, "fail")
        action: Action | None = None
        if draw < config.drop_rate:
            action = "drop"
        elif draw < config.drop_rate + config.timeout_rate:
            action = "timeout"
        elif draw < config.drop_rate + config.timeout_rate + config.error_rate:
            action = "error"
        return Decision(delay_s, action)

    def take_fail_after_commit(self, backend: str) -> bool:
        """Whether to fail this served request's answer (and count it down)."""
        config = self._configs[backend]
        if not config.fail_after_commit_next:
            return False
        left = config.fail_after_commit_next - 1
        self._configs[backend] = config.model_copy(update={"fail_after_commit_next": left})
        return True


class FaultMiddleware:
    """Applies the injector's decisions. It must wrap the app from outside FastAPI's and
    Starlette's own layers (see ``drop_connection``), hence not ``add_middleware``."""

    def __init__(self, app: ASGIApp, *, injector: FaultInjector, hang_s: float) -> None:
        self.app = app
        self.injector = injector
        self.hang_s = hang_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        backend = backend_of(scope["path"]) if scope["type"] == "http" else None
        if backend is None:
            await self.app(scope, receive, send)
            return
        decision = self.injector.decide(backend)
        if decision.delay_s:
            await asyncio.sleep(decision.delay_s)
        if decision.action == "fail":
            await send_json(send, 503, {"detail": f"{backend}: injected failure (fail_next)"})
        elif decision.action == "error":
            await send_json(send, 500, {"detail": f"{backend}: injected error (error_rate)"})
        elif decision.action == "drop":
            logger.info("%s: dropping the connection (drop_rate)", backend)
            await drop_connection(send)
        elif decision.action == "timeout":
            if await hang(receive, self.hang_s):
                await send_json(send, 504, {"detail": f"{backend}: injected timeout"})
        else:
            await self.app(scope, receive, self._failing_after_commit(backend, send))

    def _failing_after_commit(self, backend: str, send: Send) -> Send:
        """``send``, but answering 503 instead of a success while the backend's
        ``fail_after_commit_next`` lasts: the route has already done its work."""
        replaced = False

        async def wrapped(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] < 400:
                replaced = self.injector.take_fail_after_commit(backend)
                if replaced:
                    detail = f"{backend}: injected failure after commit (fail_after_commit_next)"
                    await send_json(send, 503, {"detail": detail})
                    return
            if not replaced:
                await send(message)

        return wrapped


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    """A complete JSON response."""
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def drop_connection(send: Send) -> None:
    """Close the client's connection without any response.

    ASGI has no message for that, and an app that raises or returns without answering
    gets a 500 from uvicorn. But uvicorn's ``send`` is a method of the request's cycle
    object, which holds the connection's asyncio transport (both its h11 and httptools
    protocols): aborting that transport closes the socket with nothing sent, and the
    client sees a connection error. This works only where ``send`` is uvicorn's own,
    which is why this layer sits outside FastAPI and Starlette (which wrap ``send``).
    Under another server, or httpx's in-process ``ASGITransport``, there is no socket:
    ``ConnectionResetError`` is raised instead, which the in-process client receives.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise ConnectionResetError("sandbox dropped the connection (injected fault)")
    transport.abort()
    # Let uvicorn see the connection lost before the app returns, or it would log a
    # missing response and try to write a 500 into the closed socket.
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def hang(receive: Receive, hang_s: float) -> bool:
    """Hold the request until the client hangs up (``False``) or ``hang_s`` passes
    (``True``: still connected, answer it). The body is read and discarded."""
    try:
        async with asyncio.timeout(hang_s):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return True
    return False
