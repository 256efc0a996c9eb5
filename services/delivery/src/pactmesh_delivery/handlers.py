"""The delivery service's Kafka subscribers.

Delivery hands a completion to the world (a result topic, a tenant's webhooks), so it
must know the completion is genuine. It cannot see who produced a record: on a secured
cluster Kafka does, and lets only the orchestrator and routing (a refused start) write
``workflow.completed`` and only delivery itself write ``results.*`` (``pactmesh_kit.acls``).
What delivery checks itself, whoever wrote the record: that the completion (and the
result fed to webhooks) acts for its request as the mesh accepted it, the same tenant
and the same principal (``pactmesh_kit.provenance``). A completion forged for a request
the mesh never accepted, or naming another tenant's request, reaches no result topic
and no webhook: it is audited (``result.refused``) and dead-lettered.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry import propagate
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import (
    AuditRecorded,
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

from pactmesh_delivery.domain.results import Outgoing, result_for
from pactmesh_delivery.domain.webhooks import ResultRecord
from pactmesh_delivery.runtime import Runtime

logger = logging.getLogger(__name__)


REFUSED_ACTION = "result.refused"
"""The audit action of a completion or result refused for not acting for its request."""


def register(kafka: Kafka, runtime: Runtime) -> None:
    """Subscribe the delivery service's handlers.

    Webhooks are fed by a consumer of the result topics rather than by the handler that
    publishes results: they get the very record topic consumers get (its bytes are the
    POST body and, if every attempt fails, the dead-letter record's original bytes and
    position), a result re-published after a crash is absorbed by the outbox's unique
    key, and a webhook store fault never holds back the result topic.
    """
    runtime.provenance.subscribe(kafka)
    _register_completed(kafka, runtime)
    for topic in registry().result_topics():
        _register_result(kafka, runtime, topic)


async def check_genuine(runtime: Runtime, event: Envelope[Any]) -> None:
    """Audit and refuse (dead-letter) an event that does not act for its request."""
    reason = await runtime.provenance.refusal(event)
    if reason is None:
        return
    logger.warning("refused %s %s: %s", event.type, event.event_id, reason)
    detail: dict[str, Any] = {
        "event_type": event.type,
        "event_id": str(event.event_id),
        "tenant": event.tenant,
        "principal": event.principal.model_dump(mode="json"),
        "reason": reason,
    }
    await runtime.publisher.publish(
        event.follow(AuditRecorded(service="delivery", action=REFUSED_ACTION, detail=detail))
    )
    raise RefusedMessage(f"not delivered: {reason}")


def _register_completed(kafka: Kafka, runtime: Runtime) -> None:
    settings = runtime.settings

    @kafka.subscriber(WORKFLOW_COMPLETED)
    async def on_completed(event: Envelope[WorkflowCompleted], record: Record) -> None:
        """Publish the result on the workflow's result topic, exactly once per workflow:
        with its ``delivered`` progress and audit, in a Kafka transaction the ledger
        prepared (``adapters.transactions``); results of one batch share a transaction."""
        results = runtime.require_results()
        if await results.published(event.workflow_id):
            logger.info("result of %s already delivered", event.workflow_id)
            return
        await check_genuine(runtime, event)
        if event.payload.workflow not in registry():
            raise RefusedMessage(f"no result topic for workflow {event.payload.workflow!r}")
        topic = result_topic(event.payload.workflow)
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
        outgoing = Outgoing(
            workflow_id=event.workflow_id,
            result=result_for(event),
            topic=topic,
            followers=(event.follow(delivered), event.follow(audit)),
        )
        if not await results.publish(outgoing):
            logger.info("result of %s delivered by another instance", event.workflow_id)


def _register_result(kafka: Kafka, runtime: Runtime, topic: Topic) -> None:
    @kafka.subscriber(topic)
    async def on_result(event: Envelope[WorkflowResult], record: Record) -> None:
        """Queue the result once for every webhook of its tenant that takes its workflow."""
        await check_genuine(runtime, event)
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
