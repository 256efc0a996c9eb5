"""pactmesh's contracts: the envelope, the event types, and the topic registry."""

from pactmesh_contracts.envelope import Envelope, Payload, Principal, new_event
from pactmesh_contracts.ids import uuid7

__all__ = ["Envelope", "Payload", "Principal", "new_event", "uuid7"]
