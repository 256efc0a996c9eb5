"""Why intake refuses a submission; mapped to an HTTP status or a dead letter at the edges."""

from __future__ import annotations


class IntakeError(Exception):
    """Root of intake's refusals. ``code`` is stable; ``http_status`` is what the HTTP
    edge answers, and what the inbound topic's dead letter names as its equivalent."""

    code = "intake_error"
    http_status = 400


class NotPermitted(IntakeError):
    """The principal may not submit this request (its capabilities or workflows)."""

    code = "forbidden"
    http_status = 403


class TooLarge(IntakeError):
    """The submission is over the configured size limit."""

    code = "too_large"
    http_status = 413


class IdempotencyConflict(IntakeError):
    """A key (``Idempotency-Key``, or an inbound event's workflow id) already stands for
    a different submission."""

    code = "idempotency_conflict"
    http_status = 409
