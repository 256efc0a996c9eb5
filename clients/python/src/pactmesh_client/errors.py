"""The client's exceptions: one root, and one class per refusal of the reviewer API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class PactmeshClientError(Exception):
    """Root of every error this package raises."""


@dataclass(frozen=True)
class FieldError:
    """One field a request was refused for (FastAPI's and pydantic's error shape)."""

    loc: tuple[str | int, ...]
    """Where, for example ``("body", "edited_action", "amount")``."""
    msg: str
    type: str = ""


class ApiError(PactmeshClientError):
    """The reviewer API answered with an error status.

    ``status`` is the HTTP status, ``detail`` the ``detail`` of the body (or the body's
    text when it is not JSON).
    """

    def __init__(self, status: int, detail: Any, *, method: str = "", url: str = "") -> None:
        self.status = status
        self.detail = detail
        self.method = method
        self.url = url
        where = f"{method} {url}: " if method else ""
        super().__init__(f"{where}{status} {_describe(detail)}")


class Unauthorized(ApiError):
    """401: no bearer token, or one the API does not accept (expired, another issuer)."""


class Forbidden(ApiError):
    """403: the token is valid but may not do this (a missing role or scope, another
    tenant's review, a gate that names another role)."""


class NotFound(ApiError):
    """404: no such review (or not one this token's tenant may see)."""


class Conflict(ApiError):
    """409: the review is claimed by someone else, or already decided, expired or
    withdrawn."""


class ValidationFailed(ApiError):
    """422: the request was refused field by field; ``field_errors`` says which and why
    (for an edit: where the edited action breaks its contract)."""

    def __init__(
        self,
        status: int,
        detail: Any,
        field_errors: list[FieldError],
        *,
        method: str = "",
        url: str = "",
    ) -> None:
        self.field_errors = field_errors
        super().__init__(status, detail, method=method, url=url)


def _describe(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', e)}"
            if isinstance(e, dict)
            else str(e)
            for e in detail
        )
    return str(detail)
