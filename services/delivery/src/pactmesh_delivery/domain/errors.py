"""The delivery service's exceptions; each carries a stable code."""

from __future__ import annotations

import uuid

from pactmesh_kit.errors import PactmeshError


class DeliveryError(PactmeshError):
    """Root of the delivery service's errors; each carries a stable code."""

    code = "delivery_error"


class WebhookNotFound(DeliveryError):
    """No webhook with this id in the caller's tenant (another tenant's looks the same)."""

    code = "webhook_not_found"
    kind = "not_found"

    def __init__(self, webhook_id: uuid.UUID) -> None:
        super().__init__(f"no webhook {webhook_id}")
        self.webhook_id = webhook_id


class WebhookLimitReached(DeliveryError):
    """The tenant has as many webhooks as it may register."""

    code = "webhook_limit_reached"
    kind = "conflict"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"a tenant may register at most {limit} webhooks; delete one first"
            " (PACTMESH_DELIVERY_WEBHOOK_MAX_PER_TENANT)"
        )
        self.limit = limit
