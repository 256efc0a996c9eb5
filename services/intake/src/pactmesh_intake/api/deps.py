"""FastAPI dependencies of intake's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pactmesh_intake.domain.requests import RequestStore
from pactmesh_intake.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The app's runtime."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_store(runtime: RuntimeDep) -> RequestStore:
    """The request store."""
    return runtime.require_store()


StoreDep = Annotated[RequestStore, Depends(get_store)]
