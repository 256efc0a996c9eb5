"""``/v1/workflows``: the registered workflows and each run's state.

A run is served only to its own tenant's readers (requesters and auditors hold
``runs:read``); another tenant's run answers 404, exactly like a missing one. What would
let a reader answer a pause in the tools' or a reviewer's place is left out: the run's
``pause_key`` and the ids of the calls and reviews it waits for (reviewers find a
review's id in hitl, which checks who they are).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from pactmesh_orchestrator.api.deps import CurrentReader, EngineDep
from pactmesh_orchestrator.domain.errors import RunNotFound

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])

_SECRET_VALUES = frozenset({"pause_key"})
_PAUSE_IDS = frozenset({"call_id", "review_id"})


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
        "values": {k: v for k, v in snapshot.values.items() if k not in _SECRET_VALUES},
        "next": list(snapshot.next),
        "waiting_for": [_without_ids(i.value) for i in snapshot.interrupts],
        "checkpoint_id": snapshot.config["configurable"].get("checkpoint_id"),
        "created_at": snapshot.created_at,
    }


def _without_ids(pause: Any) -> Any:
    """A pause as a reader sees it: what it asks, not the id that answers it."""
    if not isinstance(pause, dict):
        return pause
    return {k: v for k, v in pause.items() if k not in _PAUSE_IDS}
