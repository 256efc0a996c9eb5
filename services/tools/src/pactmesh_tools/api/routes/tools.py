"""``/v1/tools``: the tool registry and the state of its backends."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pactmesh_tools.api.deps import BackendsDep, RegistryDep

router = APIRouter(prefix="/v1/tools", tags=["tools"])


@router.get("")
async def list_tools(registry: RegistryDep) -> list[dict[str, Any]]:
    """Every tool with the JSON Schemas of its arguments and result."""
    return registry.describe()


@router.get("/backends")
async def list_backends(backends: BackendsDep) -> list[dict[str, Any]]:
    """Every backend's circuit breaker state and concurrency slots in use."""
    return backends.describe()
