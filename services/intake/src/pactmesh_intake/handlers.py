"""Intake's Kafka subscribers."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage as KafkaMessageDep
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import RequestSubmitted, WorkflowProgress, WorkflowResult
from pactmesh_contracts.topics import (
    REQUESTS_INBOUND,
    RESULT_TOPICS,
    WORKFLOW_PROGRESS,
    Topic,
    WorkflowUpdate,
)
from pactmesh_kit.broker import contract_decoder, refuse, subscriber
from pydantic import ValidationError

from pactmesh_intake.domain.errors import IntakeError
from pactmesh_intake.domain.intake import accept_inbound
from pactmesh_intake.domain.requests import ResultView, Transition
from pactmesh_intake.runtime import Runtime

logger = logging.getLogger(__name__)

RESULTS_TOPIC_TYPE = RESULT_TOPICS[0]
"""Every result topic carries the same record type: one decoder serves them all."""


def register(broker: KafkaBroker, runtime: Runtime) -> None:
    """Subscribe intake's handlers on ``broker``."""
    settings = runtime.settings

    @subscriber(broker, REQUESTS_INBOUND, settings)
    async def on_inbound(event: Envelope[RequestSubmitted], message: KafkaMessageDep) -> None:
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
                message, settings, f"{exc.code} (HTTP {exc.http_status} equivalent): {exc}"
            ) from exc
        if accepted:
            logger.info("accepted %s from the inbound topic", event.workflow_id)

    @subscriber(broker, WORKFLOW_PROGRESS, settings)
    async def on_progress(event: Envelope[WorkflowUpdate]) -> None:
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

    results = [topic.qualified(settings.topic_prefix) for topic in RESULT_TOPICS]
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

    # Each instance needs every event for the SSE clients connected to it: a group of
    # its own, from the latest offset (history comes from the store, not the topic).
    instance = uuid.uuid4().hex[:12]

    def live(
        topics: list[str], contract: Topic, name: str
    ) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
        return broker.subscriber(
            *topics,
            group_id=f"{settings.consumer_group_prefix}.{name}.live.{instance}",
            auto_offset_reset="latest",
            ack_policy=AckPolicy.ACK_FIRST,
            decoder=_lenient_decoder(contract),
            title=f"{settings.service_name}:{name}:live",
            description=f"{name}, for this instance's SSE clients.",
        )

    @live(
        [WORKFLOW_PROGRESS.qualified(settings.topic_prefix)], WORKFLOW_PROGRESS, "workflow.progress"
    )
    async def on_live(event: Envelope[WorkflowUpdate] | None) -> None:
        """Hand the event to the SSE clients following its request here."""
        if event is not None:
            runtime.live.publish(event)

    @live(results, RESULTS_TOPIC_TYPE, "results")
    async def on_live_result(event: Envelope[WorkflowResult] | None) -> None:
        """Hand the result to the SSE clients following its request here."""
        if event is not None:
            runtime.live.publish(event)


def _lenient_decoder(topic: Topic) -> Callable[..., Awaitable[Any]]:
    """The topic's contract, or ``None``: the shared-group consumer already
    dead-letters what the contract refuses, once, so the live one just skips it."""

    async def decode(msg: KafkaMessage, _original: Any = None) -> Any:
        try:
            return topic.adapter.validate_json(msg.body or b"")
        except ValidationError:
            return None

    return decode
