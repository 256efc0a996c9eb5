"""FastAPI dependencies of the delivery service's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pactmesh_kit.auth.http import require
from pactmesh_kit.auth.tokens import Identity

from pactmesh_delivery.domain.webhooks import WebhookStore
from pactmesh_delivery.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The app's runtime."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_webhook_store(runtime: RuntimeDep) -> WebhookStore:
    """The webhook store."""
    return runtime.require_webhooks()


WebhookStoreDep = Annotated[WebhookStore, Depends(get_webhook_store)]

IntegratorDep = Annotated[Identity, Depends(require("webhooks:manage"))]
"""The caller, who may manage its tenant's webhooks (403 otherwise)."""
