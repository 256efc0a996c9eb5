"""``/v1/requests/{id}/timeline`` and ``/v1/usage``: what happened to a request, step by
step, and what a tenant's model calls cost.

A timeline is served to the request's requester, to auditors of its tenant and to the
reviewers a gate of the request asked for (``domain.timeline.may_read``); anyone else
gets the 404 of a request that does not exist. Usage is served to holders of
``usage:read`` (auditors), for their own tenant only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pactmesh_kit.auth import Identity
from pactmesh_kit.auth.http import CurrentPrincipal, require

from pactmesh_intake.api import responses
from pactmesh_intake.api.deps import RuntimeDep
from pactmesh_intake.domain.errors import RequestNotFound
from pactmesh_intake.domain.timeline import (
    READ_USAGE,
    Timeline,
    UsageReport,
    may_read,
    timeline_of,
)

router = APIRouter(prefix="/v1", tags=["timeline"])

CurrentUsageReader = Annotated[Identity, Depends(require(READ_USAGE))]


@router.get(
    "/requests/{request_id}/timeline",
    responses={
        401: responses.UNAUTHORIZED,
        404: {"description": "No such request, or not one this token may read."},
    },
)
async def get_timeline(
    request_id: uuid.UUID, identity: CurrentPrincipal, runtime: RuntimeDep
) -> Timeline:
    """Every step of the request, in order: accepted, routed (model, confidence, reason),
    each model call (prompt template, model, raw output, validation, tokens), each tool
    call (arguments, result), each gate and decision, completion, delivery."""
    events = await runtime.require_audit().events(request_id)
    permitted = may_read(
        policy=runtime.policy,
        principal=identity.principal,
        tenant=identity.tenant,
        events=events,
    )
    if not permitted:
        raise RequestNotFound(request_id)
    return timeline_of(request_id, events)


@router.get(
    "/usage",
    responses={401: responses.UNAUTHORIZED, 403: {"description": "No `usage:read`."}},
)
async def get_usage(
    reader: CurrentUsageReader,
    runtime: RuntimeDep,
    days: Annotated[int, Query(ge=1, le=366)] = 1,
) -> UsageReport:
    """The caller's tenant's model spend per day, workflow and model over the last
    ``days`` (UTC, today included), today's total and its budget."""
    today = datetime.now(UTC).date()
    store = runtime.require_audit()
    return UsageReport(
        tenant=reader.tenant,
        since=today - timedelta(days=days - 1),
        today=await store.spent(reader.tenant, today),
        budget=runtime.settings.budgets.of(reader.tenant),
        rows=await store.usage(reader.tenant, today - timedelta(days=days - 1)),
    )
