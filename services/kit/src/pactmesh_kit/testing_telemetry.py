"""One in-memory span exporter that every span assertion shares (as logfire's
``TestExporter``): a test gets the ``Spans`` of a provider it hands to the code under
test, and asserts on names and attributes, never on snapshots.

    spans = Spans()
    service = Service(settings, title=..., description=..., tracer_provider=spans.provider)
    ...
    (chat,) = spans.named("chat default")
    assert chat.attributes["gen_ai.operation.name"] == "chat"
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Spans:
    """A tracer provider whose finished spans a test reads back."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        # Simple, not batched: a span is readable as soon as it ends.
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def all(self) -> list[ReadableSpan]:
        """Every span finished so far, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        """The finished spans called ``name``."""
        return [span for span in self.all() if span.name == name]

    def starting(self, prefix: str) -> list[ReadableSpan]:
        """The finished spans whose name starts with ``prefix``."""
        return [span for span in self.all() if span.name.startswith(prefix)]

    def clear(self) -> None:
        """Forget the spans finished so far."""
        self.exporter.clear()


class Measurements:
    """A meter provider whose metrics a test reads back, by instrument name."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self, name: str) -> list[Any]:
        """The data points of instrument ``name`` now."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += list(metric.data.data_points)
        return found
