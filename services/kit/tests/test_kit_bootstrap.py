"""``pactmesh-topics``' decisions without a broker: replication from the cluster's size,
each topic's wanted settings, the report (tests-integration/test_topics.py runs it on
real brokers)."""

from __future__ import annotations

import pytest
from pactmesh_contracts.topics import AUDIT, DEAD_LETTERS, TOOL_CALLS
from pactmesh_kit.bootstrap import DAY_MS, Replication, TopicReport, main, wanted_config
from pactmesh_kit.settings import TopicSettings
from pactmesh_workflows.registry import registry
from pydantic import ValidationError

VARIABLES = (
    "PACTMESH_KAFKA_REPLICATION_FACTOR",
    "PACTMESH_KAFKA_MIN_INSYNC_REPLICAS",
    "PACTMESH_AUDIT_RETENTION_DAYS",
    "PACTMESH_DEAD_LETTER_RETENTION_DAYS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("brokers", "factor", "min_insync"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)]
)
def test_replication_follows_the_clusters_size(brokers: int, factor: int, min_insync: int) -> None:
    assert Replication.choose(TopicSettings(), brokers=brokers) == Replication(factor, min_insync)


def test_replication_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACTMESH_KAFKA_REPLICATION_FACTOR", "2")
    assert Replication.choose(TopicSettings(), brokers=3) == Replication(2, 1)
    monkeypatch.setenv("PACTMESH_KAFKA_MIN_INSYNC_REPLICAS", "2")
    assert Replication.choose(TopicSettings(), brokers=3) == Replication(2, 2)


def test_more_replicas_than_brokers_is_refused_with_what_to_do() -> None:
    settings = TopicSettings(replication_factor=3)
    with pytest.raises(ValueError, match="PACTMESH_KAFKA_REPLICATION_FACTOR to at most 1"):
        Replication.choose(settings, brokers=1)
    with pytest.raises(ValueError, match="lower PACTMESH_KAFKA_MIN_INSYNC_REPLICAS"):
        Replication.choose(TopicSettings(min_insync_replicas=2), brokers=1)


def test_inconsistent_settings_are_refused_at_once() -> None:
    with pytest.raises(ValidationError, match="no write could succeed"):
        TopicSettings(replication_factor=2, min_insync_replicas=3)
    with pytest.raises(ValidationError, match="-1 keeps forever"):
        TopicSettings(audit_retention_days=0)


def test_every_topic_gets_the_min_isr_and_audit_and_dead_letters_their_retention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PACTMESH_AUDIT_RETENTION_DAYS", "-1")
    monkeypatch.setenv("PACTMESH_DEAD_LETTER_RETENTION_DAYS", "14")
    settings, replication = TopicSettings(), Replication(3, 2)
    for topic in registry().all_topics():
        assert wanted_config(topic, settings, replication)["min.insync.replicas"] == "2"
    assert wanted_config(AUDIT, settings, replication)["retention.ms"] == "-1"
    assert wanted_config(DEAD_LETTERS, settings, replication)["retention.ms"] == str(14 * DAY_MS)
    assert "retention.ms" not in wanted_config(TOOL_CALLS, settings, replication)


def test_the_defaults_keep_audit_a_year_and_dead_letters_a_month() -> None:
    settings, replication = TopicSettings(), Replication(1, 1)
    assert wanted_config(AUDIT, settings, replication)["retention.ms"] == str(365 * DAY_MS)
    assert wanted_config(DEAD_LETTERS, settings, replication)["retention.ms"] == str(30 * DAY_MS)


def test_the_report_says_what_changed_and_what_was_left_alone() -> None:
    report = TopicReport(
        3,
        Replication(3, 2),
        created=["p.audit"],
        altered={"p.dlq": {"retention.ms": ("604800000", "2592000000")}},
        left_alone=["p.tool.calls has 12 partitions, the registry says 6 (...)"],
    )
    assert report.lines() == [
        "cluster: 3 broker(s); replication factor 3, min.insync.replicas 2",
        "created p.audit",
        "altered p.dlq: retention.ms 604800000 -> 2592000000",
        "left as is: p.tool.calls has 12 partitions, the registry says 6 (...)",
    ]
    assert report.lines(dry_run=True)[1:3] == [
        "would create p.audit",
        "would alter p.dlq: retention.ms 604800000 -> 2592000000",
    ]


@pytest.mark.parametrize(
    "argv", [["--principal", "nobody=x"], ["--principal", "tools"], ["--upstream", "=refund"]]
)
def test_malformed_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_bad_settings_exit_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PACTMESH_KAFKA_MIN_INSYNC_REPLICAS", "0")
    assert main([]) == 2
    assert "PACTMESH_KAFKA_MIN_INSYNC_REPLICAS" in capsys.readouterr().err
