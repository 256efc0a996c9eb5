"""What intake's handlers and routes share for the life of the app."""

from __future__ import annotations

from dataclasses import dataclass, field

from pactmesh_contracts.envelope import Principal
from pactmesh_contracts.topics import WORKFLOWS
from pactmesh_kit.broker import EventPublisher

from pactmesh_intake.domain.live import LiveFeed
from pactmesh_intake.domain.requests import RequestStore
from pactmesh_intake.settings import Settings


@dataclass
class Runtime:
    """Filled in by the app's lifespan; the store exists only while the app runs."""

    settings: Settings
    publisher: EventPublisher
    store: RequestStore | None = None
    live: LiveFeed = field(default_factory=LiveFeed)
    """Progress and token events for the SSE clients connected to this instance."""
    http_principal: Principal = field(
        # Interim: granted every workflow's scope, now that routing and the tools service
        # enforce the access policy; intake's bearer-token auth replaces this default.
        default_factory=lambda: Principal(
            subject="anonymous",
            roles=("requester",),
            scopes=tuple(f"workflow:{w}" for w in WORKFLOWS),
        )
    )
    """Who HTTP requests act for until authentication lands."""

    def require_store(self) -> RequestStore:
        """The store, or an error if used outside the app's lifespan."""
        if self.store is None:
            raise RuntimeError("intake's request store is not open")
        return self.store
