"""The tools service's Kafka subscriber."""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import ToolCallCompleted, ToolCallFailed, ToolCallRequested
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
        """Run the requested tool and publish how it went."""
        call = event.payload
        outcome = await registry.invoke(
            tool=call.tool, arguments=dict(call.arguments), timeout_s=call.timeout_s
        )
        if outcome.ok:
            answer: ToolCallCompleted | ToolCallFailed = ToolCallCompleted(
                call_id=call.call_id,
                tool=call.tool,
                result=outcome.result,
                attempts=outcome.attempts,
                duration_ms=outcome.duration_ms,
            )
        else:
            assert outcome.error_code is not None
            answer = ToolCallFailed(
                call_id=call.call_id,
                tool=call.tool,
                error_code=outcome.error_code,
                message=outcome.message[:4000],
                retryable=outcome.retryable,
                attempts=outcome.attempts,
            )
            logger.warning("%s failed: %s %s", call.tool, outcome.error_code, outcome.message[:200])
        await publisher.publish(event.follow(answer))
