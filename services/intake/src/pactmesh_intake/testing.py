"""A stand-in for intake's publisher, for tests that run the domain or the app without
a broker."""

from __future__ import annotations

from typing import Any

from pactmesh_contracts.envelope import Envelope


class FakePublisher:
    """Collects published events; fails every publish while ``broken`` is set."""

    def __init__(self) -> None:
        self.events: list[Envelope[Any]] = []
        self.refused: list[Envelope[Any]] = []
        self.broken = False

    async def publish(self, event: Envelope[Any]) -> None:
        if self.broken:
            self.refused.append(event)
            raise ConnectionError("kafka unreachable")
        self.events.append(event)
