"""What the orchestrator's routes are handed: the runtime, the engine, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from pactmesh_kit.app import get_runtime
from pactmesh_kit.auth.http import CurrentPrincipal, require
from pactmesh_kit.auth.tokens import Identity

from pactmesh_orchestrator.domain.engine import Engine
from pactmesh_orchestrator.runtime import Runtime

__all__ = ["CurrentOperator", "CurrentPrincipal", "CurrentReader", "EngineDep", "RuntimeDep"]

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_engine(runtime: RuntimeDep) -> Engine:
    """The running engine."""
    return runtime.require_engine()


EngineDep = Annotated[Engine, Depends(get_engine)]

CurrentReader = Annotated[Identity, Depends(require("runs:read"))]
"""A caller who may read its own tenant's runs (requesters, auditors)."""
CurrentOperator = Annotated[Identity, Depends(require("cache:read"))]
"""A caller who may read this instance's cache counters (operators)."""
