"""Calling backends over HTTP: one ``httpx.AsyncClient`` per backend, every request
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


class HttpBackends:
    """HTTP access to named backends that share one base URL (the sandbox's).

    A client per backend, so one backend's connection pool cannot starve another's.
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
        self._clients = {name: self._client(name, base_url, transport) for name in names}
        if tracer_provider is not None:
            _instrument(list(self._clients.values()), tracer_provider)

    def _client(
        self, name: str, base_url: str, transport: httpx.AsyncBaseTransport | None
    ) -> httpx.AsyncClient:
        slots = self.guards[name].limits.concurrency
        return httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots),
        )

    async def aclose(self) -> None:
        """Close every client's connections."""
        for client in self._clients.values():
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
        client = self._clients[backend]
        headers = {IDEMPOTENCY_HEADER: ctx.idempotency_key} if idempotent else None

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
