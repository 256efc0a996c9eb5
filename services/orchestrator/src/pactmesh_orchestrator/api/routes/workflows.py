"""``/v1/workflows``: the registered workflows and each run's state.

A run is served only to its own tenant's readers (requesters and auditors hold
``runs:read``); another tenant's run answers 404, exactly like a missing one.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from pactmesh_orchestrator.api.deps import CurrentReader, EngineDep
from pactmesh_orchestrator.domain.errors import RunNotFound

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])


@router.get("")
async def list_workflows(engine: EngineDep) -> dict[str, list[str]]:
    """The registered workflows."""
    return {"workflows": list(engine.workflows)}


@router.get(
    "/runs/{workflow_id}",
    responses={
        401: {"description": "No bearer token, or an invalid, expired or foreign one."},
        403: {"description": "The token does not grant `runs:read`."},
        404: {"description": "No such run in the caller's tenant."},
    },
)
async def get_run(
    workflow_id: uuid.UUID, reader: CurrentReader, engine: EngineDep
) -> dict[str, Any]:
    """The run's latest checkpoint: its values, what runs next, and what it waits for."""
    snapshot = await engine.state(workflow_id)
    if snapshot is None or not snapshot.values or snapshot.values.get("tenant") != reader.tenant:
        raise RunNotFound(workflow_id)
    return {
        "workflow_id": str(workflow_id),
        "values": snapshot.values,
        "next": list(snapshot.next),
        "waiting_for": [i.value for i in snapshot.interrupts],
        "checkpoint_id": snapshot.config["configurable"].get("checkpoint_id"),
        "created_at": snapshot.created_at,
    }
