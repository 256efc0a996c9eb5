"""What intake keeps, for how long: requests after their last status change, and
idempotency keys after their first use (both settings)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from pactmesh_intake.domain.requests import RequestStore


class Retention(Protocol):
    """The two times to live (``Settings`` has them)."""

    @property
    def request_retention_s(self) -> float:
        """Seconds a request is kept after its last status change."""
        ...

    @property
    def idempotency_retention_s(self) -> float:
        """Seconds an idempotency key is kept after its first use."""
        ...


async def prune(
    store: RequestStore, retention: Retention, now: datetime | None = None
) -> dict[str, int]:
    """Delete what is past its retention at ``now``; how many of each went."""
    now = now or datetime.now(UTC)
    return await store.prune(
        updated_before=now - timedelta(seconds=retention.request_retention_s),
        keys_before=now - timedelta(seconds=retention.idempotency_retention_s),
    )
