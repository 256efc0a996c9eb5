"""The kit's exceptions; each carries a stable code."""

from __future__ import annotations

from pactmesh_contracts.events import DeadLetter


class PactmeshError(Exception):
    """Root of every pactmesh exception."""

    code = "pactmesh_error"


class UndeliverableMessage(PactmeshError):
    """A consumed message must go to the dead-letter topic instead of its handler."""

    code = "undeliverable_message"

    def __init__(self, dead_letter: DeadLetter) -> None:
        super().__init__(dead_letter.error)
        self.dead_letter = dead_letter
