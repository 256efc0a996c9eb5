"""A client for the hitl service's reviewer API, for reviewers working from a script.

The models below are tolerant readers: they name the fields a script needs and keep any
other field the API sends (``model_extra``), so the client keeps working when the API
adds fields.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Generator
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from pactmesh_client.errors import (
    ApiError,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    PactmeshClientError,
    Unauthorized,
    ValidationFailed,
)

ReviewId = uuid.UUID | str
_MAX_PAGES = 10_000
"""A bound on one ``pending`` walk, in case a server keeps handing out cursors."""


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Review(_Tolerant):
    """A review as the API shows it; fields the API adds are in ``model_extra``."""

    review_id: uuid.UUID
    workflow: str
    state: str
    """``pending``, ``decided``, ``expired``, ``withdrawn``..."""
    workflow_id: uuid.UUID | None = None
    tenant: str | None = None
    rule: str | None = None
    """The gate's rule that fired."""
    summary: str = ""
    action_type: str | None = None
    proposed_action: dict[str, JsonValue] = Field(default_factory=dict)
    required_role: str | None = None
    priority: str | int | None = None
    expires_at: datetime | None = None
    requested_at: datetime | None = None
    claimed_by: str | None = None
    decision: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    edited_action: dict[str, JsonValue] | None = None


class ReviewPage(_Tolerant):
    """One page of ``GET /v1/reviews``."""

    items: list[Review]
    next_cursor: str | None = None


class HistoryEntry(_Tolerant):
    """One entry of a review's history (who did what, when, why); every field the API
    sends is kept."""

    at: datetime | None = None
    actor: str | None = None
    action: str | None = None
    comment: str | None = None


class _Bearer(httpx.Auth):
    """``Authorization: Bearer <token>``, asking ``token`` afresh for every request when
    it is a function (so a script can refresh an expiring token)."""

    def __init__(self, token: str | Callable[[], str]) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._token() if callable(self._token) else self._token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


_ERRORS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


class ReviewerClient:
    """Lists, claims and decides reviews through the hitl reviewer API::

        async with ReviewerClient("http://127.0.0.1:8004", token=token) as reviews:
            async for review in reviews.pending(workflow="procurement"):
                await reviews.claim(review.review_id)
                await reviews.approve(review.review_id, comment="within budget")

    Every refusal raises a subclass of :class:`ApiError`: :class:`Unauthorized` (401),
    :class:`Forbidden` (403), :class:`NotFound` (404), :class:`Conflict` (409), or
    :class:`ValidationFailed` (422, with ``field_errors``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | Callable[[], str],
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``token`` is a bearer JWT (``pactmesh token --role reviewer`` locally), or a
        function returning one; ``transport`` replaces the network (tests)."""
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=_Bearer(token),
            timeout=timeout_s,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections (``async with`` does)."""
        await self._http.aclose()

    async def page(
        self,
        *,
        state: str | None = "pending",
        workflow: str | None = None,
        priority: str | int | None = None,
        min_age_s: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> ReviewPage:
        """One page of reviews matching the filters."""
        params = {
            "state": state,
            "workflow": workflow,
            "priority": priority,
            "min_age_s": min_age_s,
            "limit": limit,
            "cursor": cursor,
        }
        query = {k: v for k, v in params.items() if v is not None}
        return ReviewPage.model_validate(await self._call("GET", "/v1/reviews", params=query))

    async def pages(
        self,
        *,
        state: str | None = "pending",
        workflow: str | None = None,
        priority: str | int | None = None,
        min_age_s: float | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[ReviewPage]:
        """Every page of reviews matching the filters, following ``next_cursor``."""
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            page = await self.page(
                state=state,
                workflow=workflow,
                priority=priority,
                min_age_s=min_age_s,
                limit=limit,
                cursor=cursor,
            )
            yield page
            cursor = page.next_cursor
            if cursor is None:
                return
            if cursor in seen:
                raise PactmeshClientError(f"the API handed out cursor {cursor!r} twice")
            seen.add(cursor)
        raise PactmeshClientError(f"more than {_MAX_PAGES} pages of reviews")

    async def pending(
        self,
        *,
        workflow: str | None = None,
        priority: str | int | None = None,
        min_age_s: float | None = None,
        limit: int | None = None,
        state: str | None = "pending",
    ) -> AsyncIterator[Review]:
        """Every review matching the filters (pending ones by default), fetched a page
        (``limit`` reviews) at a time."""
        async for page in self.pages(
            state=state, workflow=workflow, priority=priority, min_age_s=min_age_s, limit=limit
        ):
            for review in page.items:
                yield review

    async def get(self, review_id: ReviewId) -> Review:
        """One review, with its decision once decided."""
        return Review.model_validate(await self._call("GET", f"/v1/reviews/{review_id}"))

    async def claim(self, review_id: ReviewId) -> Review | None:
        """Claim a review so that nobody else decides it; :class:`Conflict` if someone
        else holds it or it is no longer pending."""
        return _review_or_none(await self._call("POST", f"/v1/reviews/{review_id}/claim"))

    async def release(self, review_id: ReviewId) -> Review | None:
        """Give a claimed review back to the queue."""
        return _review_or_none(await self._call("DELETE", f"/v1/reviews/{review_id}/claim"))

    async def approve(self, review_id: ReviewId, *, comment: str = "") -> Review | None:
        """Approve the proposed action as it stands."""
        return await self._decide(review_id, "approve", comment=comment)

    async def reject(self, review_id: ReviewId, *, comment: str = "") -> Review | None:
        """Reject the proposed action; the workflow does not take it."""
        return await self._decide(review_id, "reject", comment=comment)

    async def edit(
        self, review_id: ReviewId, edited_action: dict[str, Any], *, comment: str = ""
    ) -> Review | None:
        """Approve a changed action (the whole action, validated against its contract:
        :class:`ValidationFailed` with the field errors otherwise)."""
        return await self._decide(review_id, "edit", comment=comment, edited_action=edited_action)

    async def history(self, review_id: ReviewId) -> list[HistoryEntry]:
        """What happened to a review, oldest first: requested, claimed, decided..."""
        body = await self._call("GET", f"/v1/reviews/{review_id}/history")
        entries = body.get("items", []) if isinstance(body, dict) else body
        return [HistoryEntry.model_validate(entry) for entry in entries]

    async def _decide(
        self,
        review_id: ReviewId,
        decision: Literal["approve", "reject", "edit"],
        *,
        comment: str,
        edited_action: dict[str, Any] | None = None,
    ) -> Review | None:
        body = {"decision": decision, "edited_action": edited_action, "comment": comment}
        return _review_or_none(
            await self._call("POST", f"/v1/reviews/{review_id}/decision", json=body)
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        if response.is_success:
            return response.json() if response.content else None
        raise _error(response)


def _review_or_none(body: Any) -> Review | None:
    """A decision or claim answers with the review, or with no body at all."""
    if not isinstance(body, dict) or "review_id" not in body:
        return None
    try:
        return Review.model_validate(body)
    except ValidationError as exc:
        raise PactmeshClientError(f"the API answered with a malformed review: {exc}") from exc


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = response.text
    where = {"method": response.request.method, "url": str(response.request.url)}
    if response.status_code == 422:
        return ValidationFailed(response.status_code, detail, _field_errors(detail), **where)
    cls = _ERRORS.get(response.status_code, ApiError)
    return cls(response.status_code, detail, **where)


def _field_errors(detail: Any) -> list[FieldError]:
    """FastAPI's ``[{"loc": [...], "msg": ..., "type": ...}]``; a bare message becomes one
    error without a location."""
    if not isinstance(detail, list):
        return [FieldError(loc=(), msg=str(detail))]
    return [
        FieldError(
            loc=tuple(e.get("loc", ())),
            msg=str(e.get("msg", "")),
            type=str(e.get("type", "")),
        )
        if isinstance(e, dict)
        else FieldError(loc=(), msg=str(e))
        for e in detail
    ]
