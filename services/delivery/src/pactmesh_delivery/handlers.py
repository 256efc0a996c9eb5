"""The delivery service's Kafka subscribers."""

from __future__ import annotations

import logging
import time

from opentelemetry import propagate
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import (
    AuditResultDelivered,
    RequestStatus,
    WorkflowCompleted,
    WorkflowProgress,
    WorkflowResult,
)
from pactmesh_contracts.topics import WORKFLOW_COMPLETED, Topic, result_topic
from pactmesh_kit.errors import RefusedMessage
from pactmesh_kit.kafka import Kafka, Record
from pactmesh_workflows.registry import registry

from pactmesh_delivery.domain.results import result_for
from pactmesh_delivery.domain.webhooks import ResultRecord
from pactmesh_delivery.runtime import Runtime

logger = logging.getLogger(__name__)


def register(kafka: Kafka, runtime: Runtime) -> None:
    """Subscribe the delivery service's handlers.

    Webhooks are fed by a consumer of the result topics rather than by the handler that
    publishes results: they get the very record topic consumers get (its bytes are the
    POST body and, if every attempt fails, the dead-letter record's original bytes and
    position), a result re-published after a crash is absorbed by the outbox's unique
    key, and a webhook store fault never holds back the result topic.
    """
    _register_completed(kafka, runtime)
    for topic in registry().result_topics():
        _register_result(kafka, runtime, topic)


def _register_completed(kafka: Kafka, runtime: Runtime) -> None:
    settings = runtime.settings

    @kafka.subscriber(WORKFLOW_COMPLETED)
    async def on_completed(event: Envelope[WorkflowCompleted], record: Record) -> None:
        """Publish the result on the workflow's result topic, once per workflow (in
        batches: results of different workflows are published concurrently)."""
        ledger = runtime.require_ledger()
        if await ledger.delivered(event.workflow_id):
            logger.info("result of %s already delivered", event.workflow_id)
            return
        if event.payload.workflow not in registry():
            raise RefusedMessage(f"no result topic for workflow {event.payload.workflow!r}")
        topic = result_topic(event.payload.workflow)
        result = result_for(event)
        await runtime.publisher.publish(result, topic=topic)
        qualified = topic.qualified(settings.topic_prefix)
        delivered = WorkflowProgress(
            status=RequestStatus.DELIVERED,
            service="delivery",
            workflow=event.payload.workflow,
            detail=f"published on {qualified}",
        )
        audit = AuditResultDelivered(
            workflow=event.payload.workflow, outcome=event.payload.outcome, topic=qualified
        )
        await runtime.publisher.publish_all([event.follow(delivered), event.follow(audit)])
        # Recorded last: a crash before this re-publishes (same result event id), never skips.
        await ledger.record(event.workflow_id, topic=topic.name, event_id=result.event_id)


def _register_result(kafka: Kafka, runtime: Runtime, topic: Topic) -> None:
    @kafka.subscriber(topic)
    async def on_result(event: Envelope[WorkflowResult], record: Record) -> None:
        """Queue the result once for every webhook of its tenant that takes its workflow."""
        queued = await runtime.require_webhooks().enqueue(
            result_record(event, record), now=time.time()
        )
        if queued:
            logger.info("result %s queued for %d webhook(s)", event.event_id, queued)
            runtime.wake_dispatcher()


def result_record(event: Envelope[WorkflowResult], record: Record) -> ResultRecord:
    """The consumed result as the outbox keeps it: exact bytes, position and trace."""
    trace_context: dict[str, str] = {}
    propagate.inject(trace_context)
    return ResultRecord(
        result_event_id=event.event_id,
        workflow_id=event.workflow_id,
        workflow=event.payload.workflow,
        tenant=event.tenant,
        body=record.value or b"",
        key=record.key,
        headers={k: v.decode(errors="replace") for k, v in (record.headers or ())},
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        trace_context=trace_context,
    )
