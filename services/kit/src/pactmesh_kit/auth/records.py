"""Bearer tokens on Kafka records: an upstream system proves who it is on the inbound
topic the way an HTTP client does.

The token travels in the record's ``authorization`` header (``Bearer <JWT>``) and is
verified by the HTTP edge's own ``TokenVerifier``: the same pinned algorithms, issuer,
audience, expiry and keys (the development issuer's, or the JWKS). The principal and
tenant are the token's; a consumer refuses an envelope that claims others.

An upstream sends the same token with every message until it expires, so a verified
token is remembered, keyed by the token string, until its ``exp``: verifying a signature
costs 100-150 µs per message, a remembered token a few (``bench/inbound_tokens.py``,
figures in ``docs/benchmarks.md``). A token is only ever
remembered after it verified, and never past its expiry; a key withdrawn from the JWKS
stops new tokens at once, tokens it already verified run out at their ``exp``, as
stateless JWTs do anywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from cachetools import TLRUCache

from pactmesh_kit.auth.tokens import AuthError, Identity, TokenVerifier

AUTHORIZATION_HEADER = "authorization"
"""The Kafka header holding ``Bearer <JWT>`` (header names compared case-insensitively)."""

Headers = Iterable[tuple[str, bytes]]
"""A record's headers, as aiokafka hands them over."""


def bearer_token(headers: Headers | None) -> str:
    """The bearer token of a record; ``AuthError`` if it has none, or several."""
    values = [v for k, v in headers or () if k.lower() == AUTHORIZATION_HEADER]
    if not values:
        raise AuthError("invalid_token", "no bearer token: the record has no authorization header")
    if len(values) > 1:
        raise AuthError("invalid_token", "the record has more than one authorization header")
    scheme, _, token = values[0].decode(errors="replace").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("invalid_token", "the authorization header is not 'Bearer <token>'")
    return token.strip()


def _until_expiry(_token: str, identity: Identity, _now: float) -> float:
    return identity.expires_at or 0.0


class RecordAuthenticator:
    """Verifies the bearer token a record carries, remembering verified tokens until they
    expire (at most ``max_tokens`` of them, least recently used first out)."""

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        max_tokens: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self._verified: TLRUCache[str, Identity] = TLRUCache(
            maxsize=max_tokens, ttu=_until_expiry, timer=clock
        )

    async def identify(self, headers: Headers | None) -> Identity:
        """Who the record's token proves; ``AuthError`` if it proves nobody."""
        token = bearer_token(headers)
        identity = self._verified.get(token)
        if identity is not None:
            return identity
        if self.verifier.fetches_keys:  # a JWKS fetch is blocking I/O: off the loop
            identity = await asyncio.to_thread(self.verifier.verify, token)
        else:
            identity = self.verifier.verify(token)
        self._verified[token] = identity
        return identity


def authorization(token: str) -> tuple[str, bytes]:
    """The header carrying ``token`` on a record."""
    return AUTHORIZATION_HEADER, f"Bearer {token}".encode()
