"""How long hitl keeps a settled review (decided, expired, escalated or withdrawn) and
its history: a setting; pending reviews are never pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pactmesh_hitl.domain.reviews import ReviewStore


async def prune(
    store: ReviewStore, *, retention_s: float, now: datetime | None = None
) -> dict[str, int]:
    """Delete reviews settled more than ``retention_s`` before ``now``."""
    now = now or datetime.now(UTC)
    return await store.prune(settled_before=now - timedelta(seconds=retention_s))
