"""``/v1/requests``: submit a request and follow its status."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from opentelemetry import trace
from pactmesh_contracts.events import RequestStatus
from pactmesh_kit.broker import WORKFLOW_ID_ATTRIBUTE

from pactmesh_intake.api.deps import RuntimeDep, StoreDep
from pactmesh_intake.domain.intake import accept_http
from pactmesh_intake.domain.live import request_events
from pactmesh_intake.domain.requests import Receipt, RequestView, SubmitRequest

router = APIRouter(prefix="/v1/requests", tags=["requests"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Receipt,
    responses={503: {"description": "The mesh could not take the request; retry later."}},
)
async def submit(
    body: SubmitRequest, runtime: RuntimeDep, store: StoreDep, response: Response
) -> Receipt:
    """Accept a request for asynchronous processing; poll ``status_url`` for progress."""
    try:
        request_id = await accept_http(
            store=store,
            publisher=runtime.publisher,
            body=body,
            tenant=runtime.settings.default_tenant,
            principal=runtime.http_principal,
        )
    except Exception as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "could not enqueue") from exc
    trace.get_current_span().set_attribute(WORKFLOW_ID_ATTRIBUTE, str(request_id))
    status_url = f"{runtime.settings.public_url}/v1/requests/{request_id}"
    response.headers["Location"] = status_url
    return Receipt(request_id=request_id, status=RequestStatus.ACCEPTED, status_url=status_url)


@router.get(
    "/{request_id}",
    response_model=RequestView,
    responses={404: {"description": "Unknown request."}},
)
async def get_request(request_id: uuid.UUID, store: StoreDep) -> RequestView:
    """The request's current status and every transition so far."""
    view = await store.get(request_id)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no request {request_id}")
    return view


async def known_request(request_id: uuid.UUID, store: StoreDep) -> uuid.UUID:
    """``request_id``, checked before a stream starts (a 404 cannot follow a 200)."""
    if await store.status(request_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no request {request_id}")
    return request_id


@router.get(
    "/{request_id}/events",
    response_class=EventSourceResponse,
    responses={404: {"description": "Unknown request."}},
)
async def follow_request(
    request_id: Annotated[uuid.UUID, Depends(known_request)],
    runtime: RuntimeDep,
    store: StoreDep,
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: the recorded history (``progress``), then live ``progress``
    and ``token`` events in order, ending with ``delivered``; idle streams get pings."""
    async for item in request_events(store=store, live=runtime.live, request_id=request_id):
        yield ServerSentEvent(event=item.event, data=item.data, id=item.id)
