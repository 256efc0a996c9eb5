"""What routing's handler shares for the life of the app."""

from __future__ import annotations

from dataclasses import dataclass

from pactmesh_kit.kafka import EventPublisher

from pactmesh_routing.domain.access import StartPolicy
from pactmesh_routing.domain.router import Router
from pactmesh_routing.settings import Settings


@dataclass
class Runtime:
    """Built by the app factory."""

    settings: Settings
    publisher: EventPublisher
    router: Router
    """Takes the routing decisions (through the models)."""
    policy: StartPolicy
    """Says who may start the workflow chosen."""
