"""A webhook receiver for the tests: an HTTP server on 127.0.0.1 that checks every
signature and answers each path from a script, and registering a webhook with it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from pactmesh_contracts.webhooks import SIGNATURE_HEADER, SignatureError, verify

from pactmesh_harness.mesh import Mesh


@dataclass
class Received:
    """One POST the receiver answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """Each path answers with its script of statuses (the last one repeating; 204 for
    paths without one) and checks every signature."""

    secrets: dict[str, str] = field(default_factory=dict)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    bad_signatures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, path: str) -> str:
        """The URL of ``path`` on this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        """What ``path`` received so far."""
        with self.lock:
            return [r for r in self.received if r.path == path]

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        """The status a POST to ``path`` gets (401 for a bad signature)."""
        with self.lock:
            try:
                verify(self.secrets[path], headers.get(SIGNATURE_HEADER), body)
            except (KeyError, SignatureError) as exc:
                self.bad_signatures.append(f"{path}: {exc!r}")
                return 401
            script = self.scripts.get(path, [204])
            seen = sum(1 for r in self.received if r.path == path)
            status = script[min(seen, len(script) - 1)]
            self.received.append(Received(path, headers, body, status))
            return status


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver serving on a free port until exit."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.answer(self.path, dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def register(
    mesh: Mesh,
    receiver: Receiver,
    *,
    tenant: str,
    path: str,
    workflows: list[str] | None = None,
    delivery: str = "delivery",
) -> dict[str, Any]:
    """Register a webhook over the API of the instance ``delivery``, as an integrator of
    ``tenant``."""
    response = httpx.post(
        f"{mesh.url(delivery)}/v1/webhooks",
        json={"url": receiver.url(path), "workflows": workflows or []},
        headers=mesh.bearer(tenant=tenant, roles=("integrator",)),
        timeout=10,
    )
    assert response.status_code == 201, response.text
    webhook = dict(response.json())
    receiver.secrets[path] = webhook["secret"]
    return webhook
