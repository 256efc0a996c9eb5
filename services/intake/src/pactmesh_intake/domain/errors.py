"""Why intake refuses a submission; mapped to an HTTP status or a dead letter at the edges."""

from __future__ import annotations

from pactmesh_kit.errors import ErrorKind, PactmeshError


class IntakeError(PactmeshError):
    """Root of intake's refusals. ``code`` is stable; ``http_status`` (from the kind) is
    what the HTTP edge answers, and what the inbound topic's dead letter names as its
    equivalent."""

    code = "intake_error"
    kind: ErrorKind = "invalid"


class NotPermitted(IntakeError):
    """The principal may not submit this request (its capabilities or workflows)."""

    code = "forbidden"
    kind = "forbidden"


class ClaimsAnotherIdentity(IntakeError):
    """An inbound envelope names a tenant or principal its bearer token does not prove:
    the token says who is asking, never the envelope."""

    code = "identity_mismatch"
    kind = "forbidden"


class TooLarge(IntakeError):
    """The submission is over the configured size limit."""

    code = "too_large"
    kind = "too_large"


class IdempotencyConflict(IntakeError):
    """A key (``Idempotency-Key``, or an inbound event's workflow id) already stands for
    a different submission."""

    code = "idempotency_conflict"
    kind = "conflict"


class RequestNotFound(IntakeError):
    """No request with this id in the caller's tenant (another tenant's looks the same)."""

    code = "request_not_found"
    kind = "not_found"

    def __init__(self, request_id: object) -> None:
        super().__init__(f"no request {request_id}")


class NotEnqueued(IntakeError):
    """An accepted request could not be handed to the mesh (the broker did not take it);
    it was not kept, so the client may retry."""

    code = "not_enqueued"
    kind = "unavailable"
