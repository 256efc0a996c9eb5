"""Reviews as the hitl service keeps them, and deciding one."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from pactmesh_contracts.envelope import Principal
from pydantic import BaseModel, ConfigDict, Field


class ReviewState(StrEnum):
    """Where a review stands."""

    PENDING = "pending"
    DECIDED = "decided"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    """The workflow ended without this review's decision; nobody should act on it."""


class Review(BaseModel):
    """A review as reviewers see it."""

    review_id: uuid.UUID
    workflow_id: uuid.UUID
    workflow: str
    tenant: str
    rule: str
    summary: str
    action_type: str = ""
    proposed_action: dict[str, Any]
    required_role: str
    expires_at: datetime
    state: ReviewState
    requested_at: datetime
    attempt: int = 0
    principal: Principal | None = None
    """Who the workflow acts for (carried into the decision event)."""
    request_event_id: uuid.UUID | None = None
    """The ReviewRequested event, the cause of the decision event."""
    decision: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    edited_action: dict[str, Any] | None = None


class DecisionRequest(BaseModel):
    """The body of ``POST /v1/reviews/{id}/decision``."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject", "edit"]
    reviewer: str = Field(min_length=1, max_length=256)
    """Who decides (until authentication lands, the caller says so)."""
    roles: list[str] = Field(min_length=1, max_length=50)
    """The reviewer's roles; one must be the review's required role."""
    comment: str = Field("", max_length=4_000)
    edited_action: dict[str, Any] | None = None
    """For ``edit``: the whole changed action, validated against the action's contract."""


class ReviewError(Exception):
    """A decision that cannot be taken; ``code`` maps to an HTTP status at the edge."""

    def __init__(
        self,
        code: Literal["not_found", "not_pending", "forbidden", "invalid"],
        message: str,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.errors = errors or []


class ReviewStore(Protocol):
    """Where reviews live."""

    async def add(self, review: Review) -> bool:
        """Store a new pending review; False if it was already stored."""
        ...

    async def get(self, review_id: uuid.UUID) -> Review | None:
        """One review, or None."""
        ...

    async def pending(
        self, *, tenant: str | None, workflow: str | None = None, limit: int, offset: int
    ) -> list[Review]:
        """Pending reviews, oldest first."""
        ...

    async def decide(
        self,
        review_id: uuid.UUID,
        *,
        state: ReviewState,
        decision: str,
        reviewer: str,
        comment: str,
        edited_action: dict[str, Any] | None,
        at: datetime,
    ) -> bool:
        """Move a pending review to ``state`` atomically; False if it was not pending."""
        ...

    async def reopen(self, review_id: uuid.UUID) -> None:
        """Undo a decision whose event could not be published."""
        ...

    async def due(self, now: datetime) -> list[Review]:
        """Pending reviews whose deadline has passed."""
        ...

    async def withdraw_for(self, workflow_id: uuid.UUID) -> int:
        """Withdraw the workflow's pending reviews; returns how many."""
        ...
