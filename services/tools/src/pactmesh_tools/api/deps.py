"""What the tools service's routes are handed: the runtime, the registry, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from pactmesh_kit.app import get_runtime
from pactmesh_kit.auth.http import CurrentPrincipal, require
from pactmesh_kit.auth.tokens import Identity

from pactmesh_tools.domain.registry import ToolRegistry
from pactmesh_tools.domain.resilience import Backends
from pactmesh_tools.runtime import Runtime

__all__ = ["BackendsDep", "CurrentOperator", "CurrentPrincipal", "RegistryDep", "RuntimeDep"]

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_registry(runtime: RuntimeDep) -> ToolRegistry:
    """The tool registry."""
    return runtime.registry


def get_backends(runtime: RuntimeDep) -> Backends:
    """The backends' guards."""
    return runtime.backends


RegistryDep = Annotated[ToolRegistry, Depends(get_registry)]
BackendsDep = Annotated[Backends, Depends(get_backends)]

CurrentOperator = Annotated[Identity, Depends(require("tools:read"))]
"""A caller who may read the registry and the backends' state (operators)."""
