"""``/v1/workflows``: the registry and each run's state; ``/v1/cache``: the semantic cache."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])
cache_router = APIRouter(prefix="/v1/cache", tags=["cache"])


@router.get("")
async def list_workflows(request: Request) -> dict[str, list[str]]:
    """The registered workflows."""
    return {"workflows": list(request.app.state.runtime.require_engine().workflows)}


@router.get("/runs/{workflow_id}", responses={404: {"description": "No such run."}})
async def get_run(workflow_id: uuid.UUID, request: Request) -> dict[str, Any]:
    """The run's latest checkpoint: its values, what runs next, and what it waits for."""
    snapshot = await request.app.state.runtime.require_engine().state(workflow_id)
    if snapshot is None or not snapshot.values:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {workflow_id}")
    return {
        "workflow_id": str(workflow_id),
        "values": snapshot.values,
        "next": list(snapshot.next),
        "waiting_for": [i.value for i in snapshot.interrupts],
        "checkpoint_id": snapshot.config["configurable"].get("checkpoint_id"),
        "created_at": snapshot.created_at,
    }


@cache_router.get("/stats")
async def cache_stats(request: Request) -> dict[str, Any]:
    """This instance's semantic-cache counters (each instance has its own cache)."""
    cache = request.app.state.runtime.cache
    if cache is None:
        return {"enabled": False}
    stats = cache.stats()
    return {
        "enabled": True,
        "scope": "instance",
        "hits": stats.hits,
        "misses": stats.misses,
        "stores": stats.stores,
        "evictions": stats.evictions,
        "expirations": stats.expirations,
        "model_calls_saved": stats.model_calls_saved,
    }
