"""Reviews as the hitl service keeps them, their history, and the store's contract."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from pactmesh_contracts.envelope import Envelope, Principal
from pactmesh_contracts.events import ReviewPriority
from pactmesh_kit.stores.outbox import Outbox
from pydantic import BaseModel, ConfigDict, Field

from pactmesh_hitl.domain.errors import ReviewError

__all__ = [
    "DecisionRequest",
    "HistoryAction",
    "HistoryEntry",
    "ListQuery",
    "Review",
    "ReviewError",
    "ReviewPage",
    "ReviewPriority",
    "ReviewState",
    "ReviewStore",
    "StateFilter",
]


class ReviewState(StrEnum):
    """Where a review stands."""

    PENDING = "pending"
    """Waiting for a reviewer (possibly claimed by one: see ``claimed_by``)."""
    DECIDED = "decided"
    EXPIRED = "expired"
    """Nobody decided before the deadline; the gate's policy rejected the action."""
    ESCALATED = "escalated"
    """Expired, and the gate asked again of another role (a new review, linked in history)."""
    WITHDRAWN = "withdrawn"
    """The workflow ended without this review's decision; nobody should act on it."""


StateFilter = Literal["pending", "claimed", "decided", "expired", "escalated", "withdrawn"]
"""What ``GET /v1/reviews?state=`` selects: a stored state, or ``claimed`` (pending with a
claim that has not lapsed)."""


class Review(BaseModel):
    """A review as reviewers see it."""

    review_id: uuid.UUID
    workflow_id: uuid.UUID
    workflow: str
    tenant: str
    rule: str
    """The policy rule that fired."""
    summary: str
    action_type: str = ""
    """The contract of ``proposed_action``; an edit must satisfy it."""
    proposed_action: dict[str, Any]
    required_role: str
    """Only reviewers holding this role may claim or decide."""
    priority: ReviewPriority = ReviewPriority.NORMAL
    expires_at: datetime
    state: ReviewState
    requested_at: datetime
    attempt: int = 0
    """0 for the first request at a gate, 1 after an escalation."""
    principal: Principal | None = None
    """Who the workflow acts for (carried into the decision event)."""
    separation_of_duties: bool = True
    """``principal`` may not claim or decide this review (the gate's setting)."""
    request_event_id: uuid.UUID | None = None
    """The ReviewRequested event, the cause of the decision event."""
    claimed_by: str | None = None
    """The reviewer working on it; the claim holds until ``claimed_until``."""
    claimed_until: datetime | None = None
    decision: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    edited_action: dict[str, Any] | None = None

    def claim_holder(self, now: datetime) -> str | None:
        """Who holds a live claim at ``now`` (None when unclaimed or lapsed)."""
        if self.claimed_by and self.claimed_until and self.claimed_until > now:
            return self.claimed_by
        return None


class ReviewPage(BaseModel):
    """One page of ``GET /v1/reviews``, oldest first."""

    items: list[Review]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next page; null on the last page."""


class DecisionRequest(BaseModel):
    """The body of ``POST /v1/reviews/{id}/decision``; who decides comes from the token."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject", "edit"]
    edited_action: dict[str, Any] | None = None
    """For ``edit``: the whole changed action, validated against the action's contract."""
    comment: str = Field("", max_length=4_000)
    """Why: recorded in the review's history and sent with the decision."""


HistoryAction = Literal[
    "requested", "claimed", "released", "decided", "reopened", "expired", "escalated", "withdrawn"
]


class HistoryEntry(BaseModel):
    """One thing that happened to a review: who did what, when, and the particulars."""

    at: datetime
    actor: str
    """A reviewer's subject, ``workflow`` for the requesting workflow, or ``policy:expiry``."""
    action: HistoryAction
    detail: dict[str, Any] = Field(default_factory=dict)
    """For ``decided``: ``decision``, ``comment`` (why) and ``edited_fields``
    (``{field: {"from": old, "to": new}}``); for ``claimed``: ``until``; and so on."""


@dataclass(frozen=True, kw_only=True)
class ListQuery:
    """What a reviewer's list asks for (always within one tenant)."""

    tenant: str
    state: StateFilter = "pending"
    workflow: str | None = None
    priorities: Sequence[ReviewPriority] = ()
    requested_before: datetime | None = None
    """From ``min_age_s``: only reviews at least that old."""
    requested_after: datetime | None = None
    """From ``max_age_s``: only reviews at most that old."""
    after: tuple[datetime, uuid.UUID] | None = None
    """Keyset position: the (requested_at, review_id) of the last review already seen."""
    limit: int = 50


class ReviewStore(Protocol):
    """Where reviews and their history live. Every state change is one atomic,
    conditional write together with its history entry; a decision or an expiry also
    writes the event announcing it to the outbox, in the same transaction."""

    @property
    def outbox(self) -> Outbox:
        """Decision events written with their decision, removed once published."""
        ...

    async def add(self, review: Review) -> bool:
        """Store a new pending review (and mark the review it escalates, if any);
        False if it was already stored."""
        ...

    async def open_reviews(self) -> list[tuple[str, datetime]]:
        """``(priority, requested_at)`` of every review still waiting, in every tenant."""
        ...

    async def get(self, review_id: uuid.UUID) -> Review | None:
        """One review, or None."""
        ...

    async def find(self, query: ListQuery, *, now: datetime) -> list[Review]:
        """Reviews matching ``query``, ordered by (requested_at, review_id)."""
        ...

    async def claim(
        self, review_id: uuid.UUID, *, reviewer: str, until: datetime, now: datetime
    ) -> bool:
        """Claim (or extend one's claim on) a pending, unexpired review nobody else holds."""
        ...

    async def release(self, review_id: uuid.UUID, *, reviewer: str, now: datetime) -> bool:
        """Drop ``reviewer``'s claim on a pending review; False if they hold none."""
        ...

    async def decide(
        self,
        review_id: uuid.UUID,
        *,
        reviewer: str,
        decision: str,
        comment: str,
        edited_action: dict[str, Any] | None,
        detail: dict[str, Any],
        event: Envelope[Any],
        now: datetime,
    ) -> bool:
        """Decide a pending, unexpired review that no other reviewer holds a live claim on,
        with ``event`` (the decision) in the outbox; False (and nothing written)
        otherwise. ``detail`` goes into the history entry."""
        ...

    async def expire(
        self,
        review_id: uuid.UUID,
        *,
        actor: str,
        reason: str,
        event: Envelope[Any],
        now: datetime,
    ) -> bool:
        """Expire a pending review (claims do not stop a deadline), with ``event`` in the
        outbox; False (and nothing written) if it is not pending."""
        ...

    async def due(self, now: datetime) -> list[Review]:
        """Pending reviews whose deadline has passed."""
        ...

    async def withdraw_for(self, workflow_id: uuid.UUID, *, now: datetime) -> int:
        """Withdraw the workflow's pending reviews; returns how many."""
        ...

    async def history(self, review_id: uuid.UUID) -> list[HistoryEntry]:
        """The review's history, oldest first."""
        ...

    async def prune(self, *, settled_before: datetime) -> dict[str, int]:
        """Delete reviews settled (decided, expired, escalated, withdrawn) before
        ``settled_before``, with their history; how many went. Safe on several
        instances at once."""
        ...
