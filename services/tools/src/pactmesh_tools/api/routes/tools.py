"""``/v1/tools``: the tool registry and the state of its backends."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pactmesh_tools.api.deps import BackendsDep, CurrentOperator, RegistryDep

router = APIRouter(
    prefix="/v1/tools",
    tags=["tools"],
    responses={
        401: {"description": "No bearer token, or an invalid, expired or foreign one."},
        403: {"description": "The token does not grant `tools:read` (operators hold it)."},
    },
)


@router.get("")
async def list_tools(operator: CurrentOperator, registry: RegistryDep) -> list[dict[str, Any]]:
    """Every tool with the JSON Schemas of its arguments and result."""
    return registry.describe()


@router.get("/backends")
async def list_backends(operator: CurrentOperator, backends: BackendsDep) -> list[dict[str, Any]]:
    """Every backend's circuit breaker state and concurrency slots in use."""
    return backends.describe()
