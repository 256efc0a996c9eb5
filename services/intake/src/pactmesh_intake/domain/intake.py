"""Accepting a request: check it, record it, then hand it to the mesh.

HTTP and the inbound topic apply the same rules, in the same order: who may submit
(:func:`check_permitted`), how big a request may be (:func:`check_size`), and
idempotency. Over HTTP the key is the client's ``Idempotency-Key``, scoped to the
tenant and remembered for a retention window; over Kafka it is the event's workflow id,
which the upstream system chooses and results carry back, so no second key is needed in
the contract: a redelivered event (same id, same request) changes nothing, and the same
id with another request is refused like HTTP's 409.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    AuditRequestAccepted,
    Channel,
    RequestAccepted,
    RequestStatus,
    RequestSubmitted,
)
from pactmesh_contracts.ids import uuid7
from pactmesh_kit.audit import audit_of
from pactmesh_kit.auth.policy import AccessPolicy

from pactmesh_intake.domain.errors import IdempotencyConflict, NotPermitted, TooLarge
from pactmesh_intake.domain.requests import (
    RequestStore,
    SubmitRequest,
    encoded_size,
    fingerprint,
)

SUBMIT = "requests:submit"
"""The API capability a principal needs to submit requests."""


class Publisher(Protocol):
    """The one publishing capability the domain needs (``EventPublisher`` satisfies it)."""

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish ``event`` durably (acks from all in-sync replicas)."""
        ...

    async def publish_all(self, events: list[Envelope[Any]]) -> None:
        """Publish ``events`` in order; return once every one is acknowledged."""
        ...


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's ``Idempotency-Key``, and how long the mesh remembers one."""

    value: str
    retention: timedelta


@dataclass(frozen=True)
class Accepted:
    """The request an accepted submission stands for."""

    request_id: uuid.UUID
    replayed: bool = False
    """True when an earlier submission with the same key was answered instead."""


def check_permitted(
    *, policy: AccessPolicy, principal: Principal, requested_workflow: str | None
) -> None:
    """Raise :class:`NotPermitted` unless ``principal`` may submit this request.

    A named workflow must be one the principal may start; without one, routing picks a
    workflow, and a principal that may start none has nothing to submit.
    """
    if not policy.can(principal, SUBMIT):
        raise NotPermitted(f"{SUBMIT!r} is not granted to {principal.subject!r}")
    if requested_workflow is not None:
        if not policy.may_start(principal, requested_workflow):
            raise NotPermitted(
                f"{principal.subject!r} may not start workflow {requested_workflow!r}"
            )
    elif not policy.startable_workflows(principal):
        raise NotPermitted(f"{principal.subject!r} may not start any workflow")


def check_size(request: SubmitRequest | RequestSubmitted, *, limit: int) -> None:
    """Raise :class:`TooLarge` if the request is over ``limit`` bytes as JSON."""
    size = encoded_size(request)
    if size > limit:
        raise TooLarge(f"the request is {size} bytes; at most {limit} are accepted")


async def accept_http(
    *,
    store: RequestStore,
    publisher: Publisher,
    body: SubmitRequest,
    tenant: str,
    principal: Principal,
    key: IdempotencyKey | None = None,
    now: datetime,
) -> Accepted:
    """Record an HTTP request and publish it as accepted.

    With ``key``, the same key and request from the same tenant answer the first
    request's id again without publishing anything; the same key with another request
    raises :class:`IdempotencyConflict`. The request's row is written before its key is
    claimed, so an id handed to a concurrent duplicate always exists; the loser of a
    race deletes its own row, which nobody has seen. If publishing fails, the row and
    the key are removed, so a client never holds an id the mesh does not know about.
    """
    request_id = uuid7()
    digest = fingerprint(body)
    await store.create(
        request_id=request_id, tenant=tenant, channel=Channel.HTTP, at=now, fingerprint=digest
    )
    if key is not None:
        holder = await store.claim_key(
            tenant=tenant,
            key=key.value,
            request_id=request_id,
            fingerprint=digest,
            at=now,
            expired_before=now - key.retention,
        )
        if holder.request_id != request_id:
            await store.forget(request_id)
            if holder.fingerprint != digest:
                raise IdempotencyConflict(
                    f"Idempotency-Key {key.value!r} was already used for request "
                    f"{holder.request_id} with a different body; use a new key for a new request"
                )
            return Accepted(holder.request_id, replayed=True)
    accepted = RequestAccepted(
        text=body.text,
        channel=Channel.HTTP,
        requested_workflow=body.requested_workflow,
        metadata=body.metadata,
    )
    event = new_event(accepted, workflow_id=request_id, tenant=tenant, principal=principal)
    try:
        await publisher.publish_all([event, event.follow(audited(accepted))])
    except BaseException:
        if key is not None:
            await store.release_key(tenant=tenant, key=key.value, request_id=request_id)
        await store.forget(request_id)
        raise
    return Accepted(request_id)


async def accept_inbound(
    *,
    store: RequestStore,
    publisher: Publisher,
    policy: AccessPolicy,
    event: Envelope[RequestSubmitted],
    max_bytes: int,
    now: datetime,
) -> bool:
    """Accept a request from the inbound topic; False if it was already further along.

    Raises what HTTP would answer with a 4xx (:class:`NotPermitted`, :class:`TooLarge`,
    :class:`IdempotencyConflict`); the handler dead-letters those. A redelivered inbound
    event is published again while the request is still only accepted (the first
    attempt may have failed after recording it); downstream consumers deduplicate by
    workflow id.
    """
    submitted = event.payload
    check_permitted(
        policy=policy, principal=event.principal, requested_workflow=submitted.requested_workflow
    )
    check_size(submitted, limit=max_bytes)
    digest = fingerprint(submitted)
    created = await store.create(
        request_id=event.workflow_id,
        tenant=event.tenant,
        channel=Channel.KAFKA,
        at=now,
        fingerprint=digest,
    )
    if not created:
        earlier = await store.submission(event.workflow_id)
        if earlier is not None and (
            (earlier.tenant, earlier.channel) != (event.tenant, Channel.KAFKA)
            or earlier.fingerprint not in (None, digest)
        ):
            raise IdempotencyConflict(
                f"workflow id {event.workflow_id} was already submitted with a different "
                "request; an inbound event's workflow id is its idempotency key"
            )
        if earlier is None or earlier.status is not RequestStatus.ACCEPTED:
            return False
    accepted = RequestAccepted(
        text=submitted.text,
        channel=Channel.KAFKA,
        requested_workflow=submitted.requested_workflow,
        metadata=submitted.metadata,
    )
    forward = event.follow(accepted)
    await publisher.publish_all([forward, forward.follow(audited(accepted))])
    return True


def audited(accepted: RequestAccepted) -> AuditRequestAccepted:
    """The timeline's first step."""
    return audit_of(AuditRequestAccepted, accepted)
