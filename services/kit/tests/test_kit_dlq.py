"""``pactmesh dlq``'s filters and time parsing (the commands themselves run against a
real broker in ``tests-integration/test_dlq.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pactmesh_contracts.events import DeadLetter
from pactmesh_kit import dlq
from pactmesh_kit.cli import main

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _letter(**changes: object) -> DeadLetter:
    base = DeadLetter(
        service="routing",
        consumer_group="g",
        source_topic="pactmesh.requests.accepted",
        source_partition=2,
        source_offset=9,
        original_key_b64=None,
        original_value_b64="e30=",
        error_code="invalid",
        error="bad",
        occurred_at=NOW,
    )
    return base.model_copy(update=changes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("2h", NOW - timedelta(hours=2)),
        ("7d", NOW - timedelta(days=7)),
        ("2025-05-31T08:00:00+02:00", datetime(2025, 5, 31, 6, 0, tzinfo=UTC)),
        ("2025-05-31T08:00:00", datetime(2025, 5, 31, 8, 0, tzinfo=UTC)),
    ],
)
def test_times_are_iso_or_a_time_ago(text: str, expected: datetime) -> None:
    assert dlq.parse_when(text, now=NOW) == expected


def test_filters_match_service_reason_topic_and_time() -> None:
    letter = _letter()
    prefix = "pactmesh."
    assert dlq.Filters().match(letter, prefix=prefix)
    assert dlq.Filters(services=frozenset({"routing"})).match(letter, prefix=prefix)
    assert not dlq.Filters(services=frozenset({"intake"})).match(letter, prefix=prefix)
    assert dlq.Filters(reasons=frozenset({"invalid", "refused"})).match(letter, prefix=prefix)
    assert not dlq.Filters(reasons=frozenset({"too_large"})).match(letter, prefix=prefix)
    for topic in ("requests.accepted", "pactmesh.requests.accepted"):
        assert dlq.Filters(source_topics=frozenset({topic})).match(letter, prefix=prefix)
    assert not dlq.Filters(source_topics=frozenset({"tool.results"})).match(letter, prefix=prefix)
    assert dlq.Filters(since=NOW - timedelta(seconds=1)).match(letter, prefix=prefix)
    assert not dlq.Filters(since=NOW + timedelta(seconds=1)).match(letter, prefix=prefix)
    assert not dlq.Filters(until=NOW).match(letter, prefix=prefix)


def test_a_dead_letter_is_named_by_its_source_position() -> None:
    assert _letter().source_ref == "pactmesh.requests.accepted/2/9"


def test_redriving_needs_a_filter_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "redrive"]) == 2
    assert "give a filter, or --all" in capsys.readouterr().err
