"""Why a tool call failed, in the codes the orchestrator branches on."""

from __future__ import annotations

from pactmesh_contracts.events import ToolErrorCode
from pactmesh_kit.errors import PactmeshError


class ToolError(PactmeshError):
    """Root of the tools service's errors: a call failed for good, not retried by the
    tools service. ``code`` is the ``ToolErrorCode`` the failure event carries;
    ``retryable`` tells the workflow whether the same call may succeed later.
    """

    def __init__(self, code: ToolErrorCode, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code: ToolErrorCode = code
        self.retryable = retryable


class TransientError(ToolError):
    """One attempt failed in a way a retry may fix (a 5xx, a timeout, a lost connection):
    retried with backoff while the call's deadline allows, and counted by the backend's
    circuit breaker."""

    def __init__(self, code: ToolErrorCode, message: str) -> None:
        super().__init__(code, message, retryable=True)


class CircuitOpenError(ToolError):
    """The backend's breaker is open: failing fast without calling it. Not retried
    within the call (that would only wait out the cooldown); the workflow may retry."""

    def __init__(self, backend: str, retry_in_s: float) -> None:
        super().__init__(
            ToolErrorCode.CIRCUIT_OPEN,
            f"{backend} is failing: its circuit breaker is open, retry in {retry_in_s:.1f}s",
            retryable=True,
        )
        self.backend = backend
        self.retry_in_s = retry_in_s
