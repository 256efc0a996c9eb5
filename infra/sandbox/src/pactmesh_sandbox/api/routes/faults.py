"""Switching faults on and off."""

from fastapi import APIRouter, HTTPException, status

from pactmesh_sandbox.api.deps import FaultsDep
from pactmesh_sandbox.faults import BACKENDS
from pactmesh_sandbox.models import FaultConfig

router = APIRouter(prefix="/faults", tags=["faults"])


@router.get("")
async def list_faults(faults: FaultsDep) -> dict[str, FaultConfig]:
    """Every backend's faults, with what is left of its counters."""
    return faults.configs()


@router.put("/{backend}", responses={404: {"description": "No such backend"}})
async def set_faults(backend: str, config: FaultConfig, faults: FaultsDep) -> FaultConfig:
    """Replace one backend's faults (``{}`` heals it) and restart its random sequence."""
    if backend not in BACKENDS:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"backend {backend} not found (known: {', '.join(BACKENDS)})",
        )
    faults.set(backend, config)
    return config


@router.delete("")
async def reset_faults(faults: FaultsDep) -> dict[str, FaultConfig]:
    """Heal every backend."""
    faults.reset()
    return faults.configs()
