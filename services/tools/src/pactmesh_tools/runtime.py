"""What the tools service's handler and routes share for the life of the app."""

from __future__ import annotations

from dataclasses import dataclass

from pactmesh_tools.domain.dispatcher import Dispatcher
from pactmesh_tools.domain.registry import ToolRegistry
from pactmesh_tools.domain.resilience import Backends
from pactmesh_tools.settings import Settings


@dataclass
class Runtime:
    """Built by the app factory; the dispatcher runs while the app does."""

    settings: Settings
    dispatcher: Dispatcher
    """Runs the calls the handler records in the inbox."""
    registry: ToolRegistry
    backends: Backends
    """Each backend's circuit breaker and concurrency slots."""
