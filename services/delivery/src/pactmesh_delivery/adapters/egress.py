"""Webhook egress: resolve a receiver's host, refuse non-public addresses, and connect
to the very address that was checked.

Checking a name at registration is not enough: its DNS answer can change (DNS
rebinding) between the check and the POST, or between one POST and the next. So every
request goes through :class:`PinnedTransport`, which resolves the host, refuses the
request if any answer is a forbidden address (``domain.egress``), and sends it to the
first checked address, keeping the ``Host`` header and the TLS server name (SNI and
certificate verification) for the original name (httpcore's ``sni_hostname`` request
extension). httpx has no hook to resolve names itself, so the transport rewrites the
URL's host to the address; connections are not kept alive, since httpcore pools them by
that address and one opened for a name must never carry another name's request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence

import httpx

from pactmesh_delivery.domain.egress import (
    IPAddress,
    IPNetwork,
    address_refusal,
    literal_address,
    redact_url,
)

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""The addresses a host name resolves to (for a port)."""


class EgressRefused(httpx.TransportError):
    """The receiver's host is, or resolves to, an address webhooks may not reach."""


class Unresolved(EgressRefused):
    """The receiver's host does not resolve (now): nothing to connect to."""


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The system's resolver (``getaddrinfo``), TCP answers only, in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = literal_address(str(sockaddr[0]).split("%", 1)[0])  # no IPv6 zone
        if address is not None and address not in found:
            found.append(address)
    return found


class EgressGuard:
    """Resolves webhook hosts and judges their addresses."""

    def __init__(
        self,
        *,
        allowed: Sequence[IPNetwork] = (),
        resolver: Resolver = system_resolver,
        resolve_timeout_s: float = 5.0,
    ) -> None:
        self.allowed = tuple(allowed)
        self._resolver = resolver
        self._timeout_s = resolve_timeout_s

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """``host``'s addresses, every one of them allowed; :class:`EgressRefused` if it
        does not resolve or any answer is forbidden (a name answering one public and one
        private address is refused, not used half-way)."""
        literal = literal_address(host)
        if literal is not None:
            found = [literal]
        else:
            try:
                async with asyncio.timeout(self._timeout_s):
                    found = await self._resolver(host, port)
            except (OSError, TimeoutError) as exc:
                raise Unresolved(f"{host} does not resolve ({type(exc).__name__})") from exc
        if not found:
            raise Unresolved(f"{host} does not resolve")
        for address in found:
            reason = address_refusal(address, self.allowed)
            if reason is not None:
                raise EgressRefused(f"{host} is or resolves to a {reason} address")
        return found


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends each request to an address the guard checked."""

    def __init__(
        self, guard: EgressGuard, *, max_connections: int, verify: ssl.SSLContext | bool = True
    ) -> None:
        """``verify``: httpx's, the system's CAs by default."""
        self._guard = guard
        # trust_env off: a proxy from the environment would connect on our behalf,
        # to whatever the name resolves to there.
        self._inner = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=0),
            trust_env=False,
            verify=verify,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Resolve, check, and send to the checked address (``Host`` and TLS name kept)."""
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        [address, *_] = await self._guard.addresses(host, port)
        request.url = request.url.copy_with(host=str(address))
        if request.url.scheme == "https" and literal_address(host) is None:
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._inner.aclose()


class RedactingFilter(logging.Filter):
    """Shows URLs in httpx's own log lines (``HTTP Request: POST <url> ...``) redacted,
    as everywhere else (no credentials, no query values)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's URL arguments; never drops a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True
