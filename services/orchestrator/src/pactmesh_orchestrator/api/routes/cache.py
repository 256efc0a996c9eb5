"""``/v1/cache``: this instance's semantic cache."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pactmesh_orchestrator.api.deps import CurrentOperator, RuntimeDep

router = APIRouter(prefix="/v1/cache", tags=["cache"])


@router.get(
    "/stats",
    responses={
        401: {"description": "No bearer token, or an invalid, expired or foreign one."},
        403: {"description": "The token does not grant `cache:read` (operators hold it)."},
    },
)
async def cache_stats(operator: CurrentOperator, runtime: RuntimeDep) -> dict[str, Any]:
    """This instance's semantic-cache counters (each instance has its own cache)."""
    if runtime.cache is None:
        return {"enabled": False}
    stats = runtime.cache.stats()
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
