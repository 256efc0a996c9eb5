"""The orchestrator's Kafka subscribers.

Keyed subscribers: a batch's workflows advance concurrently, each workflow's events in
order, and the batch's offsets are committed once every step in it is durable. A kill
mid-batch redelivers the whole batch; the engine is idempotent per event (a checkpoint
already past the event, an outbox mark already written), so nothing happens twice. A
tool result or a review decision that answers nothing its run waits for is audited by
the engine and dead-lettered here.
"""

from __future__ import annotations

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import RequestRouted, ReviewDecided
from pactmesh_contracts.topics import REQUESTS_ROUTED, REVIEWS_DECIDED, TOOL_RESULTS, ToolResult
from pactmesh_kit.errors import RefusedMessage
from pactmesh_kit.kafka import Kafka, Record

from pactmesh_orchestrator.domain.errors import AnswerRefused, UnknownWorkflowRun
from pactmesh_orchestrator.runtime import Runtime


def register(kafka: Kafka, runtime: Runtime) -> None:
    """Subscribe the orchestrator's handlers."""
    batch = runtime.settings.batch_max_records

    @kafka.subscriber(REQUESTS_ROUTED, max_records=batch)
    async def on_routed(event: Envelope[RequestRouted], record: Record) -> None:
        """Start the chosen workflow (idempotent per workflow id)."""
        await runtime.require_engine().start(event)

    @kafka.subscriber(TOOL_RESULTS, max_records=batch)
    async def on_tool_result(event: Envelope[ToolResult], record: Record) -> None:
        """Resume the run waiting for this result (idempotent per call id); refuse one
        answering no call the run waits for."""
        try:
            await runtime.require_engine().resume(event)
        except (UnknownWorkflowRun, AnswerRefused) as exc:
            raise RefusedMessage(f"{exc.code}: {exc}") from exc

    @kafka.subscriber(REVIEWS_DECIDED, max_records=batch)
    async def on_review_decided(event: Envelope[ReviewDecided], record: Record) -> None:
        """Resume the gate waiting for this decision (idempotent per review id); refuse
        one answering no pending review, or from a reviewer the gate may not hear."""
        try:
            await runtime.require_engine().decide(event)
        except (UnknownWorkflowRun, AnswerRefused) as exc:
            raise RefusedMessage(f"{exc.code}: {exc}") from exc
