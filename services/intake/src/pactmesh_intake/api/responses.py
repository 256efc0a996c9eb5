"""The error responses intake's routes document, so that its OpenAPI lists every status
a route can answer with (schemathesis holds the running app to it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Problem(BaseModel):
    """Every error but 422 (whose ``detail`` lists the field errors)."""

    detail: str
    """What went wrong and, where there is something to do, what to do."""


def _problem(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": Problem, "description": description, **extra}


def _header(description: str, schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


_CHALLENGE = "RFC 6750 challenge: `Bearer` with `error` and `error_description`."

UNAUTHORIZED = _problem(
    "No bearer token, or one that is malformed, expired, from another issuer or for "
    "another audience.",
    headers={"WWW-Authenticate": _header(_CHALLENGE, {"type": "string"}, required=True)},
)
FORBIDDEN_READ = _problem(
    "The token does not grant `requests:read`.",
    headers={"WWW-Authenticate": _header(_CHALLENGE, {"type": "string"}, required=True)},
)
FORBIDDEN_SUBMIT = _problem(
    "The token does not grant `requests:submit`, may not start the requested workflow, "
    "or may start no workflow at all.",
    headers={"WWW-Authenticate": _header(_CHALLENGE, {"type": "string"}, required=True)},
)
NOT_FOUND = _problem(
    "No request with this id in the caller's tenant. Another tenant's request is "
    "answered the same way, so its existence is not revealed."
)
CONFLICT = _problem(
    "The `Idempotency-Key` was already used by this tenant for a different request body."
)
TOO_LARGE = _problem(
    "The body is over the size limit. Refused from `Content-Length` before it is read "
    "(as text), or while it streams in when no length was declared (as JSON).",
    content={"text/plain": {"schema": {"type": "string"}}},
)
RATE_LIMITED = _problem(
    "The tenant is over its rate limit; retry after the number of seconds in `Retry-After`.",
    headers={
        "Retry-After": _header(
            "Seconds to wait before retrying.", {"type": "integer", "minimum": 1}, required=True
        )
    },
)
UNAVAILABLE = _problem("The mesh could not take the request; retry later.")
UNREADABLE = _problem("The body could not be read as text (it is not UTF-8).")


def beside_a_stream(response: dict[str, Any]) -> dict[str, Any]:
    """``response`` for a route whose success is an event stream: FastAPI would document
    a ``model`` under the route's media type (``text/event-stream``), but errors are
    JSON, so their schema is spelled out under ``application/json``."""
    documented = {k: v for k, v in response.items() if k != "model"}
    documented["content"] = {"application/json": {"schema": Problem.model_json_schema()}}
    return documented
