"""Liveness and readiness."""

from fastapi import APIRouter, Response, status

from pactmesh_sandbox.api.deps import StoreDep

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(store: StoreDep, response: Response) -> dict[str, str]:
    """The ledger's database answers."""
    if store.healthy():
        return {"status": "ok"}
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "database unavailable"}
