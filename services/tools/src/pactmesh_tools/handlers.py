"""The tools service's Kafka subscriber."""

from __future__ import annotations

import logging

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import ToolCallRequested
from pactmesh_contracts.topics import TOOL_CALLS
from pactmesh_kit.kafka import Kafka, Record

from pactmesh_tools.runtime import Runtime

logger = logging.getLogger(__name__)


def register(kafka: Kafka, runtime: Runtime) -> None:
    """Subscribe the tools service's handler."""

    @kafka.subscriber(TOOL_CALLS)
    async def on_tool_call(event: Envelope[ToolCallRequested], record: Record) -> None:
        """Record the call in the inbox and return: the offset is committed once the
        call is durable, and the dispatcher runs it (a redelivered call is ignored)."""
        if not await runtime.dispatcher.enqueue(event):
            logger.info("tool call %s is already in the inbox", event.payload.call_id)
