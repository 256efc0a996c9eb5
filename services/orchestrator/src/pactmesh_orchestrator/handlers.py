"""The orchestrator's Kafka subscribers."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import RequestRouted, ReviewDecided
from pactmesh_contracts.topics import REQUESTS_ROUTED, REVIEWS_DECIDED, TOOL_RESULTS, ToolResult
from pactmesh_kit.broker import refuse, subscriber

from pactmesh_orchestrator.domain.engine import UnknownWorkflowRun
from pactmesh_orchestrator.runtime import Runtime


def register(broker: KafkaBroker, runtime: Runtime) -> None:
    """Subscribe the orchestrator's handlers on ``broker``."""
    settings = runtime.settings

    @subscriber(broker, REQUESTS_ROUTED, settings)
    async def on_routed(event: Envelope[RequestRouted]) -> None:
        """Start the chosen workflow (idempotent per workflow id)."""
        await runtime.require_engine().start(event)

    @subscriber(broker, TOOL_RESULTS, settings)
    async def on_tool_result(event: Envelope[ToolResult], message: KafkaMessage) -> None:
        """Resume the run waiting for this result (idempotent per call id)."""
        try:
            await runtime.require_engine().resume(event)
        except UnknownWorkflowRun as exc:
            raise refuse(message, settings, str(exc)) from exc

    @subscriber(broker, REVIEWS_DECIDED, settings)
    async def on_review_decided(event: Envelope[ReviewDecided], message: KafkaMessage) -> None:
        """Resume the gate waiting for this decision (idempotent per review id)."""
        try:
            await runtime.require_engine().decide(event)
        except UnknownWorkflowRun as exc:
            raise refuse(message, settings, str(exc)) from exc
