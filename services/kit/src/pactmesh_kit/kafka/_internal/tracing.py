"""Spans for the Kafka layer: one per published message, one per consumed message, and
the W3C trace context carried in Kafka headers between them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faststream import BaseMiddleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pactmesh_kit.kafka._internal.batch import Record

PROPAGATOR = TraceContextTextMapPropagator()
TRACER_NAME = "pactmesh_kit.kafka"


def headers_of(record: Record) -> dict[str, str]:
    """A record's headers as text (undecodable bytes replaced)."""
    return {k: v.decode(errors="replace") for k, v in (record.headers or ())}


@contextmanager
def consumer_span(
    tracer: trace.Tracer, record: Record, group: str, *, traced: bool = True
) -> Iterator[trace.Span]:
    """The span one consumed record is handled in, continuing its publisher's trace. An
    untraced one records no span but still runs in the publisher's trace context, so
    what its handler logs or publishes (a dead letter) belongs to the request's trace."""
    if not traced:
        token = otel_context.attach(PROPAGATOR.extract(headers_of(record)))
        try:
            yield trace.get_current_span()
        finally:
            otel_context.detach(token)
        return
    with tracer.start_as_current_span(
        f"{record.topic} process",
        context=PROPAGATOR.extract(headers_of(record)),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.message.offset": record.offset,
            "messaging.consumer.group.name": group,
        },
    ) as span:
        yield span


def publish_spans(
    tracer: trace.Tracer, *, untraced: frozenset[str] = frozenset()
) -> type[BaseMiddleware]:
    """FastStream middleware: one producer span per published message, whose context
    travels in the message's headers.

    Instead of FastStream's TelemetryMiddleware, which records two spans per message (an
    empty ``create`` span, then ``publish``) and none for batch consumers: spans are a
    large part of a handler's CPU, and one says the same. Messages to ``untraced``
    topics (``KitSettings.untraced_topics``: records about the request, not steps of it)
    get no span, only the current trace context in their headers.
    """

    class PublishSpans(BaseMiddleware):
        async def publish_scope(self, call_next: Any, cmd: Any) -> Any:
            if cmd.destination in untraced:
                PROPAGATOR.inject(cmd.headers)
                return await call_next(cmd)
            with tracer.start_as_current_span(
                f"{cmd.destination} publish",
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation": "publish",
                    "messaging.destination.name": cmd.destination,
                },
            ):
                PROPAGATOR.inject(cmd.headers)
                return await call_next(cmd)

    return PublishSpans
