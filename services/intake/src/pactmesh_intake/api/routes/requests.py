"""``/v1/requests``: submit a request and follow its status.

Every route authenticates (bearer JWT), checks the capability, then the tenant's rate
limit. A request belongs to the tenant of the token that submitted it; another tenant
reading it gets the same 404 as for an id that does not exist. The body size limit is
not here: the app includes this router with FastAPI's ``max_body_size``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from opentelemetry import trace
from pactmesh_contracts.events import RequestStatus
from pactmesh_kit.auth.http import forbid
from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE

from pactmesh_intake.api import responses
from pactmesh_intake.api.deps import CurrentReader, CurrentSubmitter, RuntimeDep, StoreDep
from pactmesh_intake.domain.errors import IntakeError, NotEnqueued, NotPermitted, RequestNotFound
from pactmesh_intake.domain.intake import IdempotencyKey, accept_http, check_permitted
from pactmesh_intake.domain.live import request_events
from pactmesh_intake.domain.requests import Receipt, RequestView, SubmitRequest
from pactmesh_intake.domain.timeline import next_utc_midnight

router = APIRouter(prefix="/v1/requests", tags=["requests"])

KEY_PATTERN = r'^(?:"[ !#-\[\]-~]{1,253}"|[!#-\[\]-~]{1,255})$'
"""Printable ASCII without quotes or backslashes, bare or as a structured-field string
(``"..."``, as the IETF Idempotency-Key draft writes it); both spell the same key."""

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description=(
            "Makes the submission safe to retry: the same key and body from the same "
            "tenant answer the first request's id again (202, nothing submitted twice); "
            "the same key with another body is refused (409). Keys are remembered for "
            "24 hours by default."
        ),
    ),
]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Receipt,
    responses={
        202: {
            "description": "Accepted: the request, or the earlier one its Idempotency-Key names.",
            "headers": {
                "Location": {
                    "description": "The request's status URL (`status_url`).",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        },
        400: responses.UNREADABLE,
        401: responses.UNAUTHORIZED,
        403: responses.FORBIDDEN_SUBMIT,
        409: responses.CONFLICT,
        413: responses.TOO_LARGE,
        429: responses.RATE_LIMITED,
        503: responses.UNAVAILABLE,
    },
)
async def submit(
    body: SubmitRequest,
    identity: CurrentSubmitter,
    runtime: RuntimeDep,
    store: StoreDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Receipt:
    """Accept a request for asynchronous processing; poll ``status_url`` for progress
    or follow ``status_url``/events. The request runs for the token's tenant and
    principal."""
    try:
        check_permitted(
            policy=runtime.policy,
            principal=identity.principal,
            requested_workflow=body.requested_workflow,
        )
    except NotPermitted as exc:
        raise forbid(str(exc)) from exc
    if (spent := await runtime.over_daily_budget(identity.tenant)) is not None:
        raise over_budget(identity.tenant, spent)
    key = None
    if idempotency_key is not None:
        retention = timedelta(seconds=runtime.settings.idempotency_retention_s)
        key = IdempotencyKey(idempotency_key.strip('"'), retention)
    try:
        accepted = await accept_http(
            store=store,
            publisher=runtime.publisher,
            auditor=runtime.auditor,
            body=body,
            tenant=identity.tenant,
            principal=identity.principal,
            key=key,
            now=datetime.now(UTC),
        )
    except IntakeError:
        raise  # a reused Idempotency-Key: 409, by its kind
    except Exception as exc:
        raise NotEnqueued("could not enqueue") from exc
    trace.get_current_span().set_attribute(WORKFLOW_ID_ATTRIBUTE, str(accepted.request_id))
    status_url = f"{runtime.settings.public_url}/v1/requests/{accepted.request_id}"
    response.headers["Location"] = status_url
    return Receipt(
        request_id=accepted.request_id, status=RequestStatus.ACCEPTED, status_url=status_url
    )


def over_budget(tenant: str, reason: str) -> HTTPException:
    """429 for a tenant whose daily budget is spent, until the next UTC day."""
    now = datetime.now(UTC)
    retry = max(1, int((next_utc_midnight(now) - now).total_seconds()))
    detail = f"tenant {tenant!r} is over its {reason}; it starts afresh at 00:00 UTC"
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail, {"Retry-After": str(retry)})


_READ_RESPONSES: dict[int | str, dict[str, object]] = {
    401: responses.UNAUTHORIZED,
    403: responses.FORBIDDEN_READ,
    404: responses.NOT_FOUND,
    429: responses.RATE_LIMITED,
}


@router.get("/{request_id}", response_model=RequestView, responses=_READ_RESPONSES)
async def get_request(
    request_id: uuid.UUID, identity: CurrentReader, store: StoreDep
) -> RequestView:
    """The request's current status, every transition so far, and its result once
    delivered."""
    view = await store.get(request_id)
    if view is None or view.tenant != identity.tenant:
        raise RequestNotFound(request_id)
    return view


async def own_request(request_id: uuid.UUID, identity: CurrentReader, store: StoreDep) -> uuid.UUID:
    """``request_id``, checked before a stream starts (a 404 cannot follow a 200)."""
    submission = await store.submission(request_id)
    if submission is None or submission.tenant != identity.tenant:
        raise RequestNotFound(request_id)
    return request_id


@router.get(
    "/{request_id}/events",
    response_class=EventSourceResponse,
    responses={
        code: responses.beside_a_stream(response) for code, response in _READ_RESPONSES.items()
    },
)
async def follow_request(
    request_id: Annotated[uuid.UUID, Depends(own_request)],
    runtime: RuntimeDep,
    store: StoreDep,
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: the recorded history (``progress``), then live ``progress``
    and ``token`` events in order, then ``delivered`` and, last, the workflow's
    ``result`` (outcome, output or error); the stream then ends. Idle streams get pings."""
    events = request_events(
        store=store,
        live=runtime.live,
        request_id=request_id,
        result_wait_s=runtime.settings.result_wait_s,
    )
    async for item in events:
        yield ServerSentEvent(event=item.event, data=item.data, id=item.id)
