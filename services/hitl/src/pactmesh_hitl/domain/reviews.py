"""Reviews as the hitl service keeps them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel


class ReviewState(StrEnum):
    """Where a review stands."""

    PENDING = "pending"
    DECIDED = "decided"
    WITHDRAWN = "withdrawn"
    """The workflow ended without this review's decision; nobody should act on it."""


class Review(BaseModel):
    """A review a reviewer sees."""

    review_id: uuid.UUID
    workflow_id: uuid.UUID
    workflow: str
    tenant: str
    rule: str
    summary: str
    proposed_action: dict[str, Any]
    required_role: str
    expires_at: datetime
    state: ReviewState
    requested_at: datetime


class ReviewStore(Protocol):
    """Where reviews live."""

    async def add(self, review: Review) -> bool:
        """Store a new pending review; False if it was already stored."""
        ...

    async def pending(self, *, tenant: str | None, limit: int, offset: int) -> list[Review]:
        """Pending reviews, oldest first."""
        ...

    async def withdraw_for(self, workflow_id: uuid.UUID) -> int:
        """Withdraw the workflow's pending reviews; returns how many."""
        ...
