"""Spans written as JSON lines, including the bytes attributes FastStream records, to
local files rotated by size."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pactmesh_kit.settings import KitSettings
from pactmesh_kit.telemetry import (
    FileSpanExporter,
    TraceIdFilter,
    setup_telemetry,
    span_to_json_line,
)


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider, exporter
    tracer_provider.shutdown()


def _finished(provider: tuple[TracerProvider, InMemorySpanExporter]) -> list[ReadableSpan]:
    return list(provider[1].get_finished_spans())


def test_bytes_attribute_is_written_as_text(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer = provider[0].get_tracer("test")
    with tracer.start_as_current_span(
        "consume", attributes={"messaging.kafka.message.key": b"wf-1"}
    ):
        pass
    [span] = _finished(provider)

    line = span_to_json_line(span)

    assert line.endswith("\n")
    assert line.count("\n") == 1
    record = json.loads(line)
    assert record["name"] == "consume"
    assert record["attributes"]["messaging.kafka.message.key"] == "wf-1"
    assert record["context"]["trace_id"] == f"0x{span.get_span_context().trace_id:032x}"
    assert record["parent_id"] is None


def test_undecodable_bytes_do_not_lose_the_span(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer = provider[0].get_tracer("test")
    with tracer.start_as_current_span("consume") as span:
        span.set_attribute("key", b"\xff\xfeid")
        span.add_event("retry", {"raw": b"\x00ok"})
    [finished] = _finished(provider)

    record = json.loads(span_to_json_line(finished))

    assert record["attributes"]["key"] == "\ufffd\ufffdid"
    assert record["events"] == [
        {
            "name": "retry",
            "timestamp": finished.events[0].timestamp,
            "attributes": {"raw": "\x00ok"},
        }
    ]


def test_child_span_names_its_parent(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer = provider[0].get_tracer("test")
    with tracer.start_as_current_span("parent") as parent, tracer.start_as_current_span("child"):
        pass
    child = next(s for s in _finished(provider) if s.name == "child")

    record = json.loads(span_to_json_line(child))

    assert record["parent_id"] == f"0x{parent.get_span_context().span_id:016x}"
    assert record["context"]["trace_id"] == f"0x{parent.get_span_context().trace_id:032x}"


def test_log_records_carry_the_current_trace_id(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    outside = logging.LogRecord("t", logging.INFO, __file__, 1, "msg", None, None)
    assert TraceIdFilter().filter(outside)
    assert outside.trace_id == "-"

    with provider[0].get_tracer("test").start_as_current_span("work") as span:
        inside = logging.LogRecord("t", logging.INFO, __file__, 1, "msg", None, None)
        TraceIdFilter().filter(inside)
    assert inside.trace_id == f"{span.get_span_context().trace_id:032x}"


def test_local_trace_files_rotate_by_size_and_keep_a_bounded_number(tmp_path: Path) -> None:
    path = tmp_path / "traces" / "svc.jsonl"
    exporter = FileSpanExporter(path, max_bytes=4_000, backups=2)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for n in range(200):
        with tracer.start_as_current_span(f"span-{n}"):
            pass
    provider.shutdown()

    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["svc.jsonl", "svc.jsonl.1", "svc.jsonl.2"]
    for name in files:
        data = (path.parent / name).read_text()
        assert len(data.encode()) <= 4_000 + 2_000  # one span line past the limit at most
        names = [json.loads(line)["name"] for line in data.splitlines()]
        assert names, name
    assert json.loads(path.read_text().splitlines()[-1])["name"] == "span-199"


def test_settings_bound_the_trace_files(tmp_path: Path) -> None:
    settings = KitSettings(data_dir=tmp_path, trace_file_max_bytes=2048, trace_file_backups=1)
    provider = setup_telemetry(settings)
    tracer = provider.get_tracer("test")
    for n in range(100):
        with tracer.start_as_current_span(f"span-{n}"):
            pass
    provider.shutdown()
    assert sorted(p.name for p in settings.trace_file.parent.iterdir()) == [
        "pactmesh.jsonl",
        "pactmesh.jsonl.1",
    ]


def test_a_trace_file_that_cannot_be_written_loses_spans_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "traces" / "svc.jsonl"
    exporter = FileSpanExporter(path)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with caplog.at_level(logging.WARNING):
        exporter._file.stream.close()  # as a write on a full disk fails
        for n in range(50):
            with tracer.start_as_current_span(f"span-{n}"):
                pass
    provider.shutdown()
    [report] = [r.getMessage() for r in caplog.records if "writing spans" in r.getMessage()]
    assert "spans are lost until it works again" in report


def test_a_batch_of_spans_is_rotated_between_lines_in_order(tmp_path: Path) -> None:
    """The batch processor hands the exporter hundreds of spans at once: they are written
    together, each file still bounded, rotated between two lines, none lost."""
    path = tmp_path / "traces" / "svc.jsonl"
    exporter = FileSpanExporter(path, max_bytes=6_000, backups=20)
    provider = TracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("test")
    spans: list[Any] = []
    for n in range(100):
        with tracer.start_as_current_span(f"span-{n}") as span:
            spans.append(span)
    exporter.export(spans[:60])
    exporter.export(spans[60:])
    exporter.shutdown()

    def rotations(file: Path) -> int:  # svc.jsonl.N is N rotations old
        return 0 if file.name == path.name else int(file.suffix[1:])

    files = sorted(path.parent.iterdir(), key=rotations, reverse=True)
    names = []
    for file in files:
        data = file.read_text()
        assert len(data.encode()) < 6_000, file.name
        names += [json.loads(line)["name"] for line in data.splitlines()]
    assert len(files) > 3
    assert names == [f"span-{n}" for n in range(100)]
