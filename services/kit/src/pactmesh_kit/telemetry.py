"""OpenTelemetry set-up in one function, honouring the standard ``OTEL_*`` variables."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from pactmesh_kit.settings import KitSettings

LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] [trace=%(trace_id)s] %(message)s"
WORKFLOW_ID_ATTRIBUTE = "pactmesh.workflow_id"
"""Span attribute naming the workflow a span worked on, to find a request's trace."""


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def span_to_json_line(span: ReadableSpan) -> str:
    """One span as one JSON line, in the layout of ``ReadableSpan.to_json``.

    Written here because ``to_json`` raises on bytes attributes, and FastStream records
    the Kafka message key as bytes: every consumer span would be lost.
    """
    context = span.get_span_context()
    record: dict[str, Any] = {
        "name": span.name,
        "context": {
            "trace_id": f"0x{context.trace_id:032x}" if context else None,
            "span_id": f"0x{context.span_id:016x}" if context else None,
        },
        "kind": str(span.kind),
        "parent_id": f"0x{span.parent.span_id:016x}" if span.parent else None,
        "start_time": span.start_time,
        "end_time": span.end_time,
        "status": {
            "status_code": span.status.status_code.name,
            "description": span.status.description,
        },
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "timestamp": e.timestamp, "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
        "links": [
            {
                "trace_id": f"0x{link.context.trace_id:032x}",
                "span_id": f"0x{link.context.span_id:016x}",
            }
            for link in span.links
        ],
        "resource": {"attributes": dict(span.resource.attributes)},
    }
    return orjson.dumps(record, default=_jsonable, option=orjson.OPT_APPEND_NEWLINE).decode()


class FileSpanExporter(SpanExporter):
    """Spans as JSON lines appended to a file, rotated by size: at ``max_bytes`` the file
    becomes ``<name>.1`` (``.1`` becomes ``.2``...) and the oldest beyond ``backups`` is
    deleted, so local traces never fill the disk.

    The rotation is the standard library's (``RotatingFileHandler.doRollover``); a write
    that fails (a full disk) loses those spans, reports it on stderr, and never reaches
    the service.
    """

    def __init__(self, path: Path, *, max_bytes: int = 50_000_000, backups: int = 3) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _SpanFile(path, max_bytes=max_bytes, backups=max(1, backups))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Append each span as one JSON line, rotating first when the file is full."""
        self._file.write_lines([span_to_json_line(span) for span in spans])
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the file (one whose writes failed may not flush: those spans are lost)."""
        with contextlib.suppress(OSError, ValueError):
            self._file.close()


class _SpanFile(RotatingFileHandler):
    """The rotating file, written a batch of lines at a time, and reporting a failing
    write (a full disk) once a minute on the log rather than a traceback per span.

    Not ``handle()`` per line, as the handler is meant to be driven: that stats the file
    twice, seeks and flushes for every span, which the profile of the mesh found to be
    most of what exporting spans cost (docs/benchmarks.md). Here the size is read once
    per batch and the batch written and flushed once, rotating between two lines where
    the next would pass ``max_bytes``, as ``shouldRollover`` decides per record.
    """

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._reported = -REPORT_EVERY_S

    def write_lines(self, lines: Sequence[str]) -> None:
        """Append ``lines`` (each ending with its newline), rotating between two of them
        where the file would pass its limit."""
        with self.lock or contextlib.nullcontext():
            try:
                stream = self._opened()
                size = stream.tell()
                chunk: list[str] = []
                for line in lines:
                    if size and self.maxBytes and size + len(line) >= self.maxBytes:
                        stream.write("".join(chunk))
                        chunk = []
                        self.doRollover()
                        stream, size = self._opened(), 0
                    chunk.append(line)
                    size += len(line)
                stream.write("".join(chunk))
                stream.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "spans"}))

    def _opened(self) -> Any:
        """The open file (opened again after a close, as ``emit`` does)."""
        if self.stream is None:
            self.stream = self._open()
        return self.stream

    def handleError(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if now - self._reported >= REPORT_EVERY_S:
            self._reported = now
            error = sys.exc_info()[1]
            logging.getLogger(__name__).warning(
                "writing spans to %s failed (%r); spans are lost until it works again",
                self.baseFilename,
                error,
            )


REPORT_EVERY_S = 60.0


def _exporter(settings: KitSettings) -> SpanExporter:
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    return FileSpanExporter(
        settings.trace_file,
        max_bytes=settings.trace_file_max_bytes,
        backups=settings.trace_file_backups,
    )


def setup_telemetry(settings: KitSettings) -> TracerProvider:
    """A tracer provider for this service, exporting over OTLP or to a local JSON-lines file.

    Returned rather than only set globally so that tests can build several services in
    one process; the first call also becomes the global provider.
    """
    name = os.environ.get("OTEL_SERVICE_NAME") or settings.service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
    trace.set_tracer_provider(provider)  # ignored (with a warning) after the first call
    return provider


class TraceIdFilter(logging.Filter):
    """Stamps each record with the current trace id (``-`` outside a span).

    A handler filter rather than opentelemetry-instrumentation-logging's record
    factory: it sees records from every logger, including ones created before set-up
    and by libraries that build records themselves.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else "-"
        return True


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines to stderr, each carrying the current trace id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(TraceIdFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for chatty in ("aiokafka", "uvicorn.access"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))
