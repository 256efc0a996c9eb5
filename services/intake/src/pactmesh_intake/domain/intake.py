"""Accepting a request: record it, then hand it to the mesh."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import Channel, RequestAccepted, RequestStatus, RequestSubmitted
from pactmesh_contracts.ids import uuid7

from pactmesh_intake.domain.requests import RequestStore, SubmitRequest


class Publisher(Protocol):
    """The one publishing capability the domain needs (``EventPublisher`` satisfies it)."""

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish ``event`` durably (acks from all in-sync replicas)."""
        ...


async def accept_http(
    *,
    store: RequestStore,
    publisher: Publisher,
    body: SubmitRequest,
    tenant: str,
    principal: Principal,
) -> uuid.UUID:
    """Record an HTTP request and publish it as accepted; returns its request id.

    If publishing fails the record is removed again, so a client never holds an id
    the mesh does not know about.
    """
    request_id = uuid7()
    await store.create(
        request_id=request_id, tenant=tenant, channel=Channel.HTTP, at=datetime.now(UTC)
    )
    accepted = RequestAccepted(
        text=body.text,
        channel=Channel.HTTP,
        requested_workflow=body.requested_workflow,
        metadata=body.metadata,
    )
    event = new_event(accepted, workflow_id=request_id, tenant=tenant, principal=principal)
    try:
        await publisher.publish(event)
    except BaseException:
        await store.forget(request_id)
        raise
    return request_id


async def accept_inbound(
    *, store: RequestStore, publisher: Publisher, event: Envelope[RequestSubmitted]
) -> bool:
    """Accept a request from the inbound topic; False if it was already further along.

    A redelivered inbound event is published again while the request is still only
    accepted (the first attempt may have failed after recording it); downstream
    consumers deduplicate by workflow id.
    """
    await store.create(
        request_id=event.workflow_id,
        tenant=event.tenant,
        channel=Channel.KAFKA,
        at=datetime.now(UTC),
    )
    if await store.status(event.workflow_id) is not RequestStatus.ACCEPTED:
        return False
    submitted = event.payload
    accepted = RequestAccepted(
        text=submitted.text,
        channel=Channel.KAFKA,
        requested_workflow=submitted.requested_workflow,
        metadata=submitted.metadata,
    )
    await publisher.publish(event.follow(accepted))
    return True
