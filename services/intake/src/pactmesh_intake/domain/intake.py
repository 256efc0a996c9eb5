"""Accepting a request: check it, record it, then hand it to the mesh.

HTTP and the inbound topic apply the same rules, in the same order: who is asking (a
bearer token, in the ``Authorization`` header or the record's ``authorization``
header, verified by the same code; on the inbound topic the envelope's tenant and
principal must be the token's, :func:`check_envelope`), who may submit
(:func:`check_permitted`), how big a request may be (:func:`check_size`), and
idempotency. Over HTTP the key is the client's ``Idempotency-Key``, scoped to the
tenant and remembered for a retention window; over Kafka it is the event's workflow id,
which the upstream system chooses and results carry back, so no second key is needed in
the contract: a redelivered event (same id, same request) changes nothing, and the same
id with another request is refused like HTTP's 409.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    AuditRecorded,
    AuditRequestAccepted,
    Channel,
    RequestAccepted,
    RequestSubmitted,
)
from pactmesh_contracts.ids import uuid7
from pactmesh_kit.audit import audit_of
from pactmesh_kit.auth.policy import AccessPolicy
from pactmesh_kit.auth.tokens import Identity
from pactmesh_kit.errors import PactmeshError

from pactmesh_intake.domain.errors import (
    ClaimsAnotherIdentity,
    IdempotencyConflict,
    NotPermitted,
    TooLarge,
)
from pactmesh_intake.domain.requests import (
    RequestStore,
    SubmitRequest,
    encoded_size,
    fingerprint,
)

logger = logging.getLogger(__name__)

SUBMIT = "requests:submit"
"""The API capability a principal needs to submit requests."""
SERVICE = "intake"
REFUSED_ACTION = "inbound.refused"
"""The audit action of an inbound request refused for who sent it."""


class Publisher(Protocol):
    """The one publishing capability the domain needs (``EventPublisher`` satisfies it)."""

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish ``event`` durably (acks from all in-sync replicas)."""
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


def _principal_json(principal: Principal) -> dict[str, object]:
    return {
        "subject": principal.subject,
        "roles": sorted(principal.roles),
        "scopes": sorted(principal.scopes),
    }


def check_envelope(event: Envelope[Any], identity: Identity) -> None:
    """Raise :class:`ClaimsAnotherIdentity` unless the envelope's tenant and principal
    are exactly the token's (roles and scopes compared as sets): an upstream cannot
    claim a tenant, a role or a scope its token does not carry."""
    if event.tenant != identity.tenant:
        raise ClaimsAnotherIdentity(
            f"the envelope claims tenant {event.tenant!r}; the token is for {identity.tenant!r}"
        )
    claimed, proven = _principal_json(event.principal), _principal_json(identity.principal)
    if claimed != proven:
        raise ClaimsAnotherIdentity(
            f"the envelope claims principal {claimed}; the token proves {proven}"
        )


def refusal_audit(
    event: Envelope[Any], error: PactmeshError, identity: Identity | None
) -> Envelope[Any] | None:
    """The audit record of an inbound request refused for who sent it (no valid token,
    an envelope claiming another identity, a principal not permitted); None for other
    refusals (too large, a reused workflow id), which are not about identity."""
    if error.kind not in ("unauthorized", "forbidden"):
        return None
    detail: dict[str, Any] = {
        "code": error.code,
        "reason": str(error),
        "claimed": {"tenant": event.tenant, "principal": _principal_json(event.principal)},
        "token": None
        if identity is None
        else {"tenant": identity.tenant, "principal": _principal_json(identity.principal)},
    }
    audit = AuditRecorded(service=SERVICE, action=REFUSED_ACTION, detail=detail)
    return event.follow(audit)


def check_size(request: SubmitRequest | RequestSubmitted, *, limit: int) -> None:
    """Raise :class:`TooLarge` if the request is over ``limit`` bytes as JSON."""
    size = encoded_size(request)
    if size > limit:
        raise TooLarge(f"the request is {size} bytes; at most {limit} are accepted")


async def accept_http(
    *,
    store: RequestStore,
    publisher: Publisher,
    auditor: Publisher,
    body: SubmitRequest,
    tenant: str,
    principal: Principal,
    key: IdempotencyKey | None = None,
    now: datetime,
) -> Accepted:
    """Record an HTTP request with its event in the outbox, then publish the event.

    With ``key``, the same key and request from the same tenant answer the first
    request's id again without recording or publishing anything; the same key with
    another request raises :class:`IdempotencyConflict`. The request and its key are
    written in one transaction, so an id handed to a concurrent duplicate always exists.

    Once recorded, the request is accepted whatever the publish does: a publish that
    fails, or whose outcome is unknown (an acknowledgement timeout after the broker may
    have written it), leaves the event in the outbox, and the relay publishes it again,
    same event and workflow id. So the key is never released, and a client retrying
    with it gets this request, never a second workflow.
    """
    request_id = uuid7()
    digest = fingerprint(body)
    accepted = RequestAccepted(
        text=body.text,
        channel=Channel.HTTP,
        requested_workflow=body.requested_workflow,
        metadata=body.metadata,
    )
    event = new_event(accepted, workflow_id=request_id, tenant=tenant, principal=principal)
    if key is None:
        await store.create(
            request_id=request_id,
            tenant=tenant,
            channel=Channel.HTTP,
            at=now,
            fingerprint=digest,
            event=event,
        )
    elif (earlier := await _create_keyed(store, event, key, digest, now)) is not None:
        return Accepted(earlier, replayed=True)
    await _publish_recorded(publisher, auditor, event)
    return Accepted(request_id)


async def _create_keyed(
    store: RequestStore,
    event: Envelope[RequestAccepted],
    key: IdempotencyKey,
    digest: str,
    now: datetime,
) -> uuid.UUID | None:
    """Record ``event``'s request under ``key``; the earlier request's id if the key
    already holds the same request, :class:`IdempotencyConflict` if another."""
    holder = await store.create_keyed(
        request_id=event.workflow_id,
        tenant=event.tenant,
        key=key.value,
        fingerprint=digest,
        at=now,
        expired_before=now - key.retention,
        event=event,
    )
    if holder.request_id == event.workflow_id:
        return None
    if holder.fingerprint != digest:
        raise IdempotencyConflict(
            f"Idempotency-Key {key.value!r} was already used for request "
            f"{holder.request_id} with a different body; use a new key for a new request"
        )
    return holder.request_id


async def _publish_recorded(
    publisher: Publisher, auditor: Publisher, event: Envelope[RequestAccepted]
) -> None:
    """Publish an event already in the outbox (a failure leaves it to the relay), then
    its audit record."""
    try:
        await publisher.publish(event)
    except Exception as exc:
        logger.warning(
            "publishing request %s failed or its outcome is unknown (%r); it stays in the"
            " outbox and is published again with the same id",
            event.workflow_id,
            exc,
        )
    # The timeline's first step. Not in the outbox (it holds one event per request):
    # a failed publish loses this step of the timeline, never the request.
    try:
        await auditor.publish(event.follow(audited(event.payload)))
    except Exception as exc:
        logger.warning("auditing the acceptance of %s failed (%r)", event.workflow_id, exc)


async def accept_inbound(
    *,
    store: RequestStore,
    publisher: Publisher,
    auditor: Publisher,
    policy: AccessPolicy,
    event: Envelope[RequestSubmitted],
    identity: Identity,
    max_bytes: int,
    now: datetime,
) -> bool:
    """Accept a request from the inbound topic, sent by ``identity`` (its record's
    verified token); False if it was already recorded.

    Raises what HTTP would answer with a 4xx (:class:`ClaimsAnotherIdentity`,
    :class:`NotPermitted`, :class:`TooLarge`, :class:`IdempotencyConflict`); the handler
    dead-letters those. The request and its accepted event are recorded together, then
    the event is published (as over HTTP, a failed publish leaves it to the outbox's
    relay), so a redelivered inbound event has nothing left to do.
    """
    submitted = event.payload
    check_envelope(event, identity)
    check_permitted(
        policy=policy,
        principal=identity.principal,
        requested_workflow=submitted.requested_workflow,
    )
    check_size(submitted, limit=max_bytes)
    digest = fingerprint(submitted)
    accepted = _accepted_inbound(event, identity)
    created = await store.create(
        request_id=event.workflow_id,
        tenant=identity.tenant,
        channel=Channel.KAFKA,
        at=now,
        fingerprint=digest,
        event=accepted,
    )
    if not created:
        await _check_same_submission(store, event, identity.tenant, digest)
        return False
    await _publish_recorded(publisher, auditor, accepted)
    return True


def _accepted_inbound(
    event: Envelope[RequestSubmitted], identity: Identity
) -> Envelope[RequestAccepted]:
    """The accepted event, for the token's tenant and principal, not the envelope's
    (checked equal already): what every service downstream acts for is what intake
    verified."""
    submitted = event.payload
    return event.follow(
        RequestAccepted(
            text=submitted.text,
            channel=Channel.KAFKA,
            requested_workflow=submitted.requested_workflow,
            metadata=submitted.metadata,
        ),
        tenant=identity.tenant,
        principal=identity.principal,
    )


async def _check_same_submission(
    store: RequestStore, event: Envelope[RequestSubmitted], tenant: str, digest: str
) -> None:
    """Raise :class:`IdempotencyConflict` if the workflow id was recorded for another
    request (an inbound event's workflow id is its idempotency key)."""
    earlier = await store.submission(event.workflow_id)
    if earlier is not None and (
        (earlier.tenant, earlier.channel) != (tenant, Channel.KAFKA)
        or earlier.fingerprint not in (None, digest)
    ):
        raise IdempotencyConflict(
            f"workflow id {event.workflow_id} was already submitted with a different "
            "request; an inbound event's workflow id is its idempotency key"
        )


def audited(accepted: RequestAccepted) -> AuditRequestAccepted:
    """The timeline's first step."""
    return audit_of(AuditRequestAccepted, accepted)
