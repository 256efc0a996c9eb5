"""``/v1/webhooks``: downstream systems register where their tenant's results are POSTed.

Every route acts within the caller's tenant (from the token): another tenant's webhook
is answered exactly like one that does not exist (404).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from pactmesh_delivery.adapters.egress import EgressGuard, EgressRefused, Unresolved
from pactmesh_delivery.api.deps import CurrentIntegrator, RuntimeDep, StoreDep
from pactmesh_delivery.domain.errors import WebhookNotFound
from pactmesh_delivery.domain.webhooks import (
    DeliveryView,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    new_secret,
)


class ErrorBody(BaseModel):
    """FastAPI's error body."""

    detail: str


_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "No bearer token, or an invalid, expired or foreign one.",
    },
    403: {"model": ErrorBody, "description": "The token does not grant `webhooks:manage`."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such webhook in the caller's tenant."}
}

_REGISTER_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body could not be read (it is not UTF-8)."},
    409: {
        "model": ErrorBody,
        "description": "The tenant already has as many webhooks as it may register.",
    },
}

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=_AUTH_RESPONSES)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses=_REGISTER_RESPONSES,
)
async def register_webhook(
    body: WebhookCreate,
    identity: CurrentIntegrator,
    store: StoreDep,
    runtime: RuntimeDep,
    response: Response,
) -> WebhookCreated:
    """Register a webhook for the caller's tenant. The answer holds the signing secret,
    shown this once: verify each delivery's ``Pactmesh-Signature`` with it.

    The URL's host must be, or resolve only to, public addresses (422 otherwise); it is
    resolved and checked again before every delivery."""
    await _check_destination(runtime.egress, body)
    secret = new_secret()
    webhook = await store.create_webhook(
        tenant=identity.tenant,
        spec=body,
        secret=secret,
        now=time.time(),
        max_per_tenant=runtime.settings.webhook_max_per_tenant,
    )
    response.headers["Location"] = f"{router.prefix}/{webhook.id}"
    return WebhookCreated(**webhook.model_dump(), secret=secret)


@router.get("", response_model=list[Webhook])
async def list_webhooks(identity: CurrentIntegrator, store: StoreDep) -> list[Webhook]:
    """The caller's tenant's webhooks (without their secrets)."""
    return await store.webhooks(tenant=identity.tenant)


@router.get("/{webhook_id}", response_model=Webhook, responses=_NOT_FOUND)
async def get_webhook(
    webhook_id: uuid.UUID, identity: CurrentIntegrator, store: StoreDep
) -> Webhook:
    """One webhook (without its secret)."""
    webhook = await store.webhook(tenant=identity.tenant, webhook_id=webhook_id)
    if webhook is None:
        raise WebhookNotFound(webhook_id)
    return webhook


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_webhook(
    webhook_id: uuid.UUID, identity: CurrentIntegrator, store: StoreDep
) -> Response:
    """Remove a webhook; its pending deliveries are never sent."""
    if not await store.delete_webhook(tenant=identity.tenant, webhook_id=webhook_id):
        raise WebhookNotFound(webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=list[DeliveryView], responses=_NOT_FOUND)
async def list_deliveries(
    webhook_id: uuid.UUID,
    identity: CurrentIntegrator,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryView]:
    """The webhook's deliveries, newest first: attempts, last status, state."""
    deliveries = await store.deliveries(tenant=identity.tenant, webhook_id=webhook_id, limit=limit)
    if deliveries is None:
        raise WebhookNotFound(webhook_id)
    return deliveries


async def _check_destination(guard: EgressGuard, body: WebhookCreate) -> None:
    """422 on the ``url`` field when its host is, or resolves to, a forbidden address.

    A name that does not resolve now is accepted: nothing it could reach is known yet,
    and every delivery resolves and checks it again before connecting.
    """
    host, port = body.url.host or "", body.url.port or 443
    try:
        await guard.addresses(host, port)
    except Unresolved:
        return
    except EgressRefused as exc:
        error = {
            "type": "value_error",
            "loc": ("body", "url"),
            "msg": str(exc),
            "input": str(body.url),
        }
        raise RequestValidationError([error]) from exc
