"""The tools service's Kafka subscriber."""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import ToolCallRequested
from pactmesh_contracts.topics import TOOL_CALLS
from pactmesh_kit.broker import EventPublisher, subscriber

from pactmesh_tools.domain.registry import ToolRegistry
from pactmesh_tools.settings import Settings

logger = logging.getLogger(__name__)


def register(
    broker: KafkaBroker, settings: Settings, publisher: EventPublisher, registry: ToolRegistry
) -> None:
    """Subscribe the tools service's handler on ``broker``."""

    @subscriber(broker, TOOL_CALLS, settings)
    async def on_tool_call(event: Envelope[ToolCallRequested]) -> None:
        """Run the requested tool and publish how it went (always: it never raises)."""
        call = event.payload
        outcome = await registry.invoke(
            tool=call.tool,
            arguments=dict(call.arguments),
            idempotency_key=call.idempotency_key,
            timeout_s=call.timeout_s,
        )
        if not outcome.ok:
            logger.warning("%s failed: %s %s", call.tool, outcome.error_code, outcome.message[:200])
        await publisher.publish(
            event.follow(outcome.to_event(call_id=call.call_id, tool=call.tool))
        )
