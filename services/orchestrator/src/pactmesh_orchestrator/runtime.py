"""What the orchestrator's handlers and routes share for the life of the app."""

from __future__ import annotations

from dataclasses import dataclass

from pactmesh_kit.errors import NotReady
from pactmesh_kit.kafka import EventPublisher
from pactmesh_reasoning.semantic_cache import SemanticCache

from pactmesh_orchestrator.domain.engine import Engine
from pactmesh_orchestrator.settings import Settings


@dataclass
class Runtime:
    """Filled in by the app's lifespan."""

    settings: Settings
    publisher: EventPublisher
    engine: Engine | None = None
    cache: SemanticCache | None = None
    """This instance's semantic cache (not shared with other instances)."""

    def require_engine(self) -> Engine:
        """The engine; ``NotReady`` outside the app's lifespan."""
        if self.engine is None:
            raise NotReady("the orchestrator's engine is not running")
        return self.engine
