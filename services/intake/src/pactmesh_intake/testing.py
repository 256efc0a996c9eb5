"""A stand-in for intake's publisher, for tests that run the domain or the app without
a broker."""

from __future__ import annotations

from typing import Any

from pactmesh_contracts.envelope import Envelope


class FakePublisher:
    """Collects published events; fails every publish while ``broken`` is set, and
    while ``losing_acks`` is set publishes each event but then raises as an
    acknowledgement timeout would (the broker wrote it; the caller cannot know)."""

    def __init__(self) -> None:
        self.events: list[Envelope[Any]] = []
        self.refused: list[Envelope[Any]] = []
        self.broken = False
        self.losing_acks = False

    async def publish(self, event: Envelope[Any]) -> None:
        if self.broken:
            self.refused.append(event)
            raise ConnectionError("kafka unreachable")
        self.events.append(event)
        if self.losing_acks:
            raise TimeoutError("no acknowledgement within the request timeout")
