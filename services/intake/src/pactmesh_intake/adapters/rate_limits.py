"""Per-tenant rate limits on the ``limits`` library (moving windows).

With the default ``memory://`` storage each intake instance counts on its own, so the
effective limit of a tenant is the configured one times the number of instances behind
the load balancer. That is the trade accepted for a single-process default (no extra
service to run); point ``PACTMESH_INTAKE_RATE_LIMIT_STORAGE`` at Redis
(``redis://host:6379/0``) and every instance draws from one count (``limits`` keeps
each window in Redis and counts with Lua scripts, atomically; the client is redis-py's
asyncio one).
"""

from __future__ import annotations

import math
import time
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from redis.asyncio import ConnectionPool


def _async_uri(uri: str) -> str:
    return uri if uri.startswith("async+") else f"async+{uri}"


def _storage(uri: str) -> tuple[Any, ConnectionPool | None]:
    """``limits``' async storage for ``uri``, and the Redis connection pool to close at
    the end, if any: Redis goes through redis-py (``limits``' own default Redis client,
    coredis, would pin an old ``packaging``) on a pool of our own, so it can be closed."""
    async_uri = _async_uri(uri)
    if not async_uri.startswith(("async+redis://", "async+rediss://")):
        return storage_from_string(async_uri), None
    pool = ConnectionPool.from_url(async_uri.removeprefix("async+"))
    # ``limits`` passes options through to redis-py (its stubs only name scalar ones).
    options: dict[str, Any] = {"implementation": "redispy", "connection_pool": pool}
    return storage_from_string(async_uri, **options), pool


class TenantRateLimiter:
    """One named budget (``submit``, ``read``), counted per tenant.

    Several windows (``5/second;100/minute``) give a burst and a sustained rate; a
    request must fit in every one of them and then counts against all of them.
    """

    def __init__(self, name: str, limits: str, *, storage_uri: str = "memory://") -> None:
        self.name = name
        self.items: list[RateLimitItem] = parse_many(limits)
        storage, self._pool = _storage(storage_uri)
        self._limiter = MovingWindowRateLimiter(storage)

    async def acquire(self, tenant: str) -> int | None:
        """Count one request of ``tenant``; None if allowed, else whole seconds to wait."""
        for item in self.items:
            if not await self._limiter.test(item, self.name, tenant):
                stats = await self._limiter.get_window_stats(item, self.name, tenant)
                return max(1, math.ceil(stats.reset_time - time.time()))
        for item in self.items:
            await self._limiter.hit(item, self.name, tenant)
        return None

    async def aclose(self) -> None:
        """Close the connections to a shared storage (nothing to close in memory)."""
        if self._pool is not None:
            await self._pool.aclose()

    def describe(self) -> str:
        """The limits, for messages: ``5 per 1 second; 100 per 1 minute``."""
        return "; ".join(str(item) for item in self.items)
