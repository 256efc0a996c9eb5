"""Error responses FastAPI would otherwise fail to send (installed on every service by
``create_service_app``)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: a field error echoes the input, and an
    input with an unpaired surrogate (``"\\ud800"`` in the body) cannot be encoded as
    UTF-8, so FastAPI's own 422 handler fails with a 500 on it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


async def validation_failed(_request: Request, exc: Exception) -> JSONResponse:
    """422 with every field error, as FastAPI answers, but encodable whatever the input."""
    assert isinstance(exc, RequestValidationError)
    return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)
