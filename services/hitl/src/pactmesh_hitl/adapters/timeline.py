"""The request timeline beside a review: fetched from intake, which keeps the audit topic,
with the reviewer's own token (intake decides who may read it: a reviewer whose role the
request's gate asked for), so the reviewer page talks to hitl alone."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


class TimelineClient:
    """Asks intake for a request's timeline."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None):
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10, transport=transport)

    async def timeline(self, request_id: uuid.UUID, *, authorization: str) -> dict[str, Any] | None:
        """The timeline, or None when intake has none this token may read."""
        answer = await self._http.get(
            f"/v1/requests/{request_id}/timeline", headers={"Authorization": authorization}
        )
        if answer.status_code in (401, 403, 404):
            return None
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()
