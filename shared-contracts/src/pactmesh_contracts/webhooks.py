"""Webhook signatures: how delivery signs a payload and how a receiver checks it.

Header ``Pactmesh-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, where the MAC is
over ``f"{t}.".encode() + body`` with the subscriber's secret. The timestamp is inside
the MAC, so a captured request cannot be replayed later than ``tolerance_s``; several
``v1=`` entries may appear while a secret is being rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Pactmesh-Signature"
DELIVERY_HEADER = "Pactmesh-Delivery"
"""Unique per (subscriber, result): receivers deduplicate on it."""
EVENT_HEADER = "Pactmesh-Event-Id"
"""The id of the result event delivered."""


class SignatureError(ValueError):
    """A webhook request whose signature does not check out."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Pactmesh-Signature`` header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> int:
    """Check ``header`` against ``body``; returns the signed timestamp.

    Raises :class:`SignatureError` if the header is missing or malformed, the timestamp
    is outside ``tolerance_s`` of now, or no ``v1`` MAC matches (compared in constant
    time).
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            macs.append(value)
    if timestamp is None or not macs:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError("signature timestamp outside the tolerance")
    expected = _mac(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        raise SignatureError("signature does not match")
    return timestamp
