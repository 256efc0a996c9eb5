"""The tools service's Kafka subscriber."""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import ToolCallRequested
from pactmesh_contracts.topics import TOOL_CALLS
from pactmesh_kit.broker import Record, keyed_subscriber

from pactmesh_tools.dispatcher import Dispatcher
from pactmesh_tools.settings import Settings

logger = logging.getLogger(__name__)


def register(broker: KafkaBroker, settings: Settings, dispatcher: Dispatcher) -> None:
    """Subscribe the tools service's handler on ``broker``."""

    @keyed_subscriber(broker, TOOL_CALLS, settings)
    async def on_tool_call(event: Envelope[ToolCallRequested], record: Record) -> None:
        """Record the call in the inbox and return: the offset is committed once the
        call is durable, and the dispatcher runs it (a redelivered call is ignored)."""
        if not await dispatcher.enqueue(event):
            logger.info("tool call %s is already in the inbox", event.payload.call_id)
