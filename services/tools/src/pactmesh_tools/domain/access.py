"""The access policy at invocation: a tool runs only for a workflow that may use it, on
behalf of a principal granted it, and only for a request the mesh accepted from that
principal, in that tenant.

The edge already checked who may start which workflow; this check is the one that
stands next to the side effect, so a ``ToolCallRequested`` forged straight onto Kafka is
refused here, answered with a ``ToolCallFailed`` that says why, and audited: one whose
principal lacks the grant, and one whose principal grants itself a scope (or claims
another tenant), which no accepted request vouches for (``pactmesh_kit.provenance``).
"""

from __future__ import annotations

from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope, Principal
from pactmesh_contracts.events import (
    AuditRecorded,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
)

SERVICE = "tools"
REFUSED_ACTION = "tool.call.refused"
"""The audit action of a refused call."""


class ToolAccess(Protocol):
    """Says whether a workflow may call a tool for a principal
    (``pactmesh_kit.auth.AccessPolicy`` does)."""

    def tool_refusal(self, principal: Principal, workflow: str | None, tool: str) -> str | None:
        """Why not, or None if it may."""
        ...


class RequestCheck(Protocol):
    """Says whether an event acts for its request as the mesh accepted it
    (``pactmesh_kit.provenance.Provenance`` does)."""

    async def refusal(self, event: Envelope[Any]) -> str | None:
        """Why not, or None if it does."""
        ...


async def refusal_of(
    *, access: ToolAccess, requests: RequestCheck, request: Envelope[ToolCallRequested]
) -> str | None:
    """Why ``request`` may not run, or None if it may: the policy first (no waiting),
    then the request it claims to act for."""
    call = request.payload
    return access.tool_refusal(request.principal, call.workflow, call.tool) or (
        await requests.refusal(request)
    )


def refusal_events(
    *, request: Envelope[ToolCallRequested], reason: str
) -> tuple[Envelope[Any], Envelope[Any]]:
    """The audit record of a refused call, then its answer: ``forbidden``, not retryable
    (the same call for the same principal will be refused again)."""
    call = request.payload
    audit = AuditRecorded(
        service=SERVICE,
        action=REFUSED_ACTION,
        detail={
            "call_id": str(call.call_id),
            "tool": call.tool,
            "workflow": call.workflow,
            "idempotency_key": call.idempotency_key,
            "tenant": request.tenant,
            "principal": {
                "subject": request.principal.subject,
                "roles": list(request.principal.roles),
                "scopes": list(request.principal.scopes),
            },
            "reason": reason,
        },
    )
    failed = ToolCallFailed(
        call_id=call.call_id,
        tool=call.tool,
        error_code=ToolErrorCode.FORBIDDEN,
        message=f"refused by the access policy: {reason}"[:4000],
        retryable=False,
        attempts=0,
    )
    return request.follow(audit), request.follow(failed)
