"""A stand-in for intake's publisher, for tests that run the domain or the app without
a broker."""

from __future__ import annotations

from typing import Any

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.topics import AUDIT, topic_for


class FakePublisher:
    """Collects published events; fails every publish while ``broken`` is set, and
    while ``losing_acks`` is set publishes each event but then raises as an
    acknowledgement timeout would (the broker wrote it; the caller cannot know). The
    timeline's audit events are kept apart, in ``audits``."""

    def __init__(self) -> None:
        self.events: list[Envelope[Any]] = []
        self.audits: list[Envelope[Any]] = []
        self.refused: list[Envelope[Any]] = []
        self.broken = False
        self.losing_acks = False

    async def publish(self, event: Envelope[Any]) -> None:
        if self.broken:
            self.refused.append(event)
            raise ConnectionError("kafka unreachable")
        (self.audits if topic_for(event.payload) is AUDIT else self.events).append(event)
        if self.losing_acks:
            raise TimeoutError("no acknowledgement within the request timeout")

    async def publish_all(self, events: list[Envelope[Any]]) -> None:
        for event in events:
            await self.publish(event)
