"""hitl's exceptions: one root, whose code says what kind of refusal it is."""

from __future__ import annotations

from typing import Any, Literal

from pactmesh_kit.errors import ErrorKind, PactmeshError

ErrorCode = Literal["not_found", "forbidden", "conflict", "invalid", "unavailable"]


class ReviewError(PactmeshError):
    """Root of hitl's errors: a review action that cannot be taken. ``code`` is also its
    kind, which the app maps to an HTTP status; an ``invalid`` one's ``errors`` are
    field errors, answered as the ``detail`` (the shape of a 422)."""

    def __init__(
        self, code: ErrorCode, message: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.kind: ErrorKind = code
        self.errors = errors or []

    @property
    def detail(self) -> Any:
        """The field errors of an ``invalid`` refusal, else the message."""
        return self.errors if self.code == "invalid" else str(self)
