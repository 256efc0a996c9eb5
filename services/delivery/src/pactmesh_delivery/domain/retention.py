"""How long the delivery service keeps finished deliveries (delivered or dead) and its
ledger entries: one setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pactmesh_delivery.domain.results import Ledger
from pactmesh_delivery.domain.webhooks import WebhookStore


async def prune(
    *, webhooks: WebhookStore, ledger: Ledger, retention_s: float, now: datetime | None = None
) -> dict[str, int]:
    """Delete what finished more than ``retention_s`` before ``now``."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=retention_s)
    return {
        "deliveries": await webhooks.prune(finished_before=cutoff.timestamp()),
        "ledger": await ledger.prune(recorded_before=cutoff),
    }
