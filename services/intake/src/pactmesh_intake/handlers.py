"""Intake's Kafka subscribers.

Keyed subscribers (batches, one commit per batch, requests handled concurrently and
each request's events in order) for the inbound topic and progress. Results are kept
for status reads and replayed streams. The live fan-out reads every progress, token and
result event but decodes only those of requests an SSE client here follows.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import RequestSubmitted, WorkflowProgress, WorkflowResult
from pactmesh_contracts.topics import (
    REQUESTS_INBOUND,
    RESULTS,
    WORKFLOW_PROGRESS,
    Topic,
    WorkflowUpdate,
)
from pactmesh_kit.broker import (
    BATCH_IDLE_MS,
    BATCH_MAX_RECORDS,
    Record,
    contract_decoder,
    keyed_subscriber,
    raw_records,
    refuse,
    undecoded_batch,
)
from pactmesh_workflows.registry import registry
from pydantic import ValidationError

from pactmesh_intake.domain.errors import IntakeError
from pactmesh_intake.domain.intake import accept_inbound
from pactmesh_intake.domain.requests import ResultView, Transition
from pactmesh_intake.runtime import Runtime

logger = logging.getLogger(__name__)

RESULTS_TOPIC_TYPE = RESULTS
"""Every result topic carries the same record type: one decoder serves them all."""


def register(broker: KafkaBroker, runtime: Runtime) -> None:
    """Subscribe intake's handlers on ``broker``."""
    settings = runtime.settings

    @keyed_subscriber(broker, REQUESTS_INBOUND, settings)
    async def on_inbound(event: Envelope[RequestSubmitted], record: Record) -> None:
        """Accept a request published by an upstream system; dead-letter what HTTP would
        refuse with a 4xx (not permitted, too large, key reused for another request)."""
        try:
            accepted = await accept_inbound(
                store=runtime.require_store(),
                publisher=runtime.publisher,
                policy=runtime.policy,
                event=event,
                max_bytes=settings.max_body_bytes,
                now=datetime.now(UTC),
            )
        except IntakeError as exc:
            raise refuse(
                record, settings, f"{exc.code} (HTTP {exc.http_status} equivalent): {exc}"
            ) from exc
        if accepted:
            logger.info("accepted %s from the inbound topic", event.workflow_id)

    @keyed_subscriber(broker, WORKFLOW_PROGRESS, settings)
    async def on_progress(event: Envelope[WorkflowUpdate], record: Record) -> None:
        """Record a status transition for ``GET /v1/requests/{id}`` (tokens are not kept)."""
        if not isinstance(event.payload, WorkflowProgress):
            return
        await runtime.require_store().record(
            Transition(
                event_id=event.event_id,
                request_id=event.workflow_id,
                status=event.payload.status,
                service=event.payload.service,
                detail=event.payload.detail,
                workflow=event.payload.workflow,
                at=event.occurred_at,
            )
        )

    results = [topic.qualified(settings.topic_prefix) for topic in registry().result_topics()]
    results_group = f"{settings.consumer_group_prefix}.results"

    @broker.subscriber(
        *results,
        group_id=results_group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=contract_decoder(RESULTS_TOPIC_TYPE, settings=settings, group=results_group),
        title=f"{settings.service_name}:results",
        description="Delivered results, kept for status reads and replayed event streams.",
    )
    async def on_result(event: Envelope[WorkflowResult]) -> None:
        """Keep the result of a request submitted here (others' are not ours to keep)."""
        await runtime.require_store().record_result(
            request_id=event.workflow_id, result=ResultView.of(event)
        )

    # Each instance needs every event for the SSE clients connected to it: groups of
    # its own, from the latest offset (history comes from the store, not the topic).
    instance = uuid.uuid4().hex[:12]

    def live(topics: list[str], contract: Topic, name: str) -> None:
        async def on_live(records: Any) -> None:
            """Hand each event to the SSE clients following its request here (if any)."""
            for record in records:
                request_id = _request_id(record)
                if request_id is None or not runtime.live.following(request_id):
                    continue
                if (event := _lenient(record, contract)) is not None:
                    runtime.live.publish(event)

        on_live.__annotations__["records"] = undecoded_batch(contract)
        broker.subscriber(
            *topics,
            group_id=f"{settings.consumer_group_prefix}.{name}.live.{instance}",
            auto_offset_reset="latest",
            ack_policy=AckPolicy.ACK_FIRST,
            batch=True,
            max_records=BATCH_MAX_RECORDS,
            batch_timeout_ms=BATCH_IDLE_MS,
            decoder=raw_records,
            title=f"{settings.service_name}:{name}:live",
            description=f"{name}, for this instance's SSE clients.",
        )(on_live)

    live([WORKFLOW_PROGRESS.qualified(settings.topic_prefix)], WORKFLOW_PROGRESS, "progress")
    live(results, RESULTS_TOPIC_TYPE, "results")


def _request_id(record: Record) -> uuid.UUID | None:
    """The request a record belongs to, from its key (the workflow id)."""
    try:
        return uuid.UUID(record.key.decode()) if record.key else None
    except ValueError:
        return None


def _lenient(record: Record, topic: Topic) -> Envelope[Any] | None:
    """The topic's contract, or ``None``: the shared-group consumer already
    dead-letters what the contract refuses, once, so the live one just skips it."""
    try:
        event: Envelope[Any] = topic.adapter.validate_json(record.value or b"")
    except ValidationError:
        return None
    return event
