"""Calling backends over HTTP: ``httpx.AsyncClient`` pools per backend, every request
through the backend's guard, and every failure translated into the tools' error codes."""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from pactmesh_contracts.events import ToolErrorCode

from pactmesh_tools.domain.errors import ToolError, TransientError
from pactmesh_tools.domain.resilience import Backends, CallContext

IDEMPOTENCY_HEADER = "Idempotency-Key"
TENANT_HEADER = "Pactmesh-Tenant"
"""Every backend request names the tenant it acts for: backends scope their data by it."""
PRINCIPAL_HEADER = "Pactmesh-Principal"
"""...and the subject it acts for, which side effects are recorded against."""
POOL_CONNECTIONS = 256
"""Connections per ``httpx`` pool. httpcore scans every connection of a pool for each
request it queues and each response it closes, so a pool of thousands of connections
costs quadratic CPU; a backend allowed more requests at once gets several pools."""


class _Pools:
    """A backend's clients; each request goes to the one with the fewest in flight."""

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self.clients = clients
        self._busy = [0] * len(clients)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``AsyncClient.request`` on the least busy client."""
        n = min(range(len(self.clients)), key=self._busy.__getitem__)
        self._busy[n] += 1
        try:
            return await self.clients[n].request(method, path, **kwargs)
        finally:
            self._busy[n] -= 1


class HttpBackends:
    """HTTP access to named backends that share one base URL (the sandbox's).

    Clients per backend, so one backend's connection pool cannot starve another's; a
    backend allowed more than ``POOL_CONNECTIONS`` requests at once gets several.
    """

    def __init__(
        self,
        *,
        base_url: str,
        guards: Backends,
        names: tuple[str, ...],
        transport: httpx.AsyncBaseTransport | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.guards = guards
        self._tls = httpx.create_ssl_context()  # one CA bundle in memory, not one per client
        self._pools = {name: self._clients(name, base_url, transport) for name in names}
        if tracer_provider is not None:
            _instrument(
                [c for pools in self._pools.values() for c in pools.clients], tracer_provider
            )

    def _clients(
        self, name: str, base_url: str, transport: httpx.AsyncBaseTransport | None
    ) -> _Pools:
        slots = self.guards[name].limits.concurrency
        count = -(-slots // POOL_CONNECTIONS)
        per_client = -(-slots // count)
        limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
        return _Pools(
            [
                httpx.AsyncClient(
                    base_url=base_url, transport=transport, limits=limits, verify=self._tls
                )
                for _ in range(count)
            ]
        )

    async def aclose(self) -> None:
        """Close every client's connections."""
        for pools in self._pools.values():
            for client in pools.clients:
                await client.aclose()

    async def request(
        self,
        backend: str,
        method: str,
        path: str,
        *,
        ctx: CallContext,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = False,
    ) -> Any:
        """One request to ``backend`` under its guard; the decoded JSON answer.

        ``idempotent`` sends the call's idempotency key, for side effects.
        """
        client = self._pools[backend]
        headers = {TENANT_HEADER: ctx.tenant, PRINCIPAL_HEADER: ctx.principal}
        if idempotent:
            headers[IDEMPOTENCY_HEADER] = ctx.idempotency_key

        async def send() -> Any:
            try:
                response = await client.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=ctx.attempt_timeout_s,
                )
            except httpx.TimeoutException as exc:
                raise TransientError(
                    ToolErrorCode.TIMEOUT,
                    f"{backend} did not answer within {ctx.attempt_timeout_s:g}s ({_name(exc)})",
                ) from exc
            except httpx.TransportError as exc:
                raise TransientError(
                    ToolErrorCode.BACKEND_ERROR, f"{backend}: connection failed: {_name(exc)}"
                ) from exc
            return answer(backend, response)

        return await self.guards[backend].call(send, ctx=ctx)


def answer(backend: str, response: httpx.Response) -> Any:
    """The decoded JSON of a 2xx answer, or the error the status means.

    4xx: the request is at fault, so a retry cannot help (``retryable=False``). 5xx:
    the backend is, so the call is retried (a 504 counts as a timeout).
    """
    status = response.status_code
    if response.is_success:
        try:
            return response.json()
        except ValueError as exc:
            raise ToolError(
                ToolErrorCode.BACKEND_ERROR,
                f"{backend} answered {status} with no JSON",
                retryable=False,
            ) from exc
    detail = _detail(response)
    if status >= 500:
        code = ToolErrorCode.TIMEOUT if status == 504 else ToolErrorCode.BACKEND_ERROR
        raise TransientError(code, f"{backend} failed ({status}): {detail}")
    what = {404: "not found", 409: "conflict"}.get(status, "refused the request")
    raise ToolError(
        ToolErrorCode.BACKEND_ERROR, f"{backend}: {what} ({status}): {detail}", retryable=False
    )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else str(detail)[:500]


def _name(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _instrument(clients: list[httpx.AsyncClient], tracer_provider: TracerProvider) -> None:
    """A client span per request, and the trace context in its headers."""
    for client in clients:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=tracer_provider)
