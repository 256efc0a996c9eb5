"""Per-tenant rate limits: counted per instance in memory, or shared through Redis."""

from __future__ import annotations

import uuid

import pytest
from pactmesh_intake.adapters.rate_limits import TenantRateLimiter


async def _hits(limiters: list[TenantRateLimiter], tenant: str, count: int) -> list[int | None]:
    """``count`` requests of ``tenant``, spread over ``limiters`` in turn."""
    return [await limiters[n % len(limiters)].acquire(tenant) for n in range(count)]


async def test_in_memory_each_instance_counts_on_its_own() -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    one, two = (TenantRateLimiter("submit", "2/minute") for _ in range(2))

    answers = await _hits([one, two], tenant, 6)

    assert [a is None for a in answers] == [True] * 4 + [False] * 2


async def test_two_instances_share_a_tenants_limit_through_redis(redis_url: str) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    one, two = (
        TenantRateLimiter("submit", "3/minute;5/hour", storage_uri=redis_url) for _ in range(2)
    )

    try:
        answers = await _hits([one, two], tenant, 6)
        other = await _hits([two], f"{tenant}-other", 1)
    finally:
        await one.aclose()
        await two.aclose()

    assert [a is None for a in answers] == [True] * 3 + [False] * 3
    assert all(a is not None and 0 < a <= 60 for a in answers[3:])
    assert other == [None]  # another tenant has its own count


@pytest.mark.parametrize("uri", ["redis://127.0.0.1:1/0", "async+redis://127.0.0.1:1/0"])
async def test_redis_storage_is_taken_without_connecting(uri: str) -> None:
    limiter = TenantRateLimiter("read", "2000/second", storage_uri=uri)
    assert limiter.describe() == "2000 per 1 second"
    await limiter.aclose()
