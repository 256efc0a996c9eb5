"""What the hitl service's handlers and routes share for the life of the app."""

from __future__ import annotations

from dataclasses import dataclass, field

from pactmesh_kit.errors import NotReady
from pactmesh_kit.stores.outbox import Relay

from pactmesh_hitl.adapters.timeline import TimelineClient
from pactmesh_hitl.domain.reviews import ReviewStore
from pactmesh_hitl.settings import Settings


@dataclass
class Runtime:
    """Filled in by the app's lifespan."""

    settings: Settings
    publisher: Relay
    """Publishes decisions at once, and what the outbox still holds later."""
    store: ReviewStore | None = None
    timelines: TimelineClient | None = None
    """Intake's timelines, shown beside a review."""
    open_reviews: dict[tuple[str, str], int] = field(default_factory=dict)
    """Reviews waiting, by priority and age bucket (refreshed for the metrics)."""

    def require_store(self) -> ReviewStore:
        """The store; ``NotReady`` outside the app's lifespan."""
        if self.store is None:
            raise NotReady("the review store is not open")
        return self.store
