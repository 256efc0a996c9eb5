"""The kit's exceptions, and the root every service's exceptions descend from.

Each exception carries a stable ``code`` (for logs, dead letters and clients) and a
``kind``: what sort of refusal it is. Kinds map to HTTP statuses in one table
(``HTTP_STATUS``), which the app builder applies to any ``PactmeshError`` a route lets
through: routes raise domain errors, and never translate them by hand.
"""

from __future__ import annotations

from typing import Any, Literal

from pactmesh_contracts.events import DeadLetterCode

ErrorKind = Literal[
    "invalid",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "too_large",
    "unavailable",
    "internal",
]
"""What sort of refusal an error is; each maps to one HTTP status at the edge."""

HTTP_STATUS: dict[ErrorKind, int] = {
    "invalid": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "unavailable": 503,
    "internal": 500,
}
"""The HTTP status each kind of error is answered with (and named by in dead letters)."""


class PactmeshError(Exception):
    """Root of every pactmesh exception."""

    code: str = "pactmesh_error"
    """Stable identifier of the error, for logs, dead letters and clients."""
    kind: ErrorKind = "internal"
    """What sort of refusal this is (maps to an HTTP status at the edge)."""
    waiting_cures: bool = True
    """Whether waiting can make it pass: start-up waits out what it can (a broker or a
    database still starting), and gives up at once on what it cannot."""

    @property
    def detail(self) -> Any:
        """What an HTTP answer carries as its ``detail``: the message by default."""
        return str(self)

    @property
    def http_status(self) -> int:
        """The HTTP status this error is answered with."""
        return HTTP_STATUS[self.kind]


class NotReady(PactmeshError, RuntimeError):
    """A resource is used outside the app's lifespan (before it opened, after it closed)."""

    code = "not_ready"
    kind = "unavailable"


class RefusedMessage(PactmeshError):
    """A handler refuses a well-formed message it cannot act on (for example a result for
    a workflow run never heard of): the message goes to the dead-letter topic with
    ``reason``, at once, and the consumer moves on."""

    code = "refused"
    kind = "invalid"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidMessage(PactmeshError):
    """A consumed message its topic's contract refuses. ``code`` is the dead-letter code:
    ``undecodable`` (not JSON), ``unknown_type`` (a type tag the topic does not carry) or
    ``invalid`` (anything else the contract refuses); ``errors`` are pydantic's."""

    kind = "invalid"

    def __init__(self, code: DeadLetterCode, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.code: DeadLetterCode = code
        self.errors = errors
