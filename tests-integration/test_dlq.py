"""``pactmesh dlq`` on the real broker: list and show dead letters by service, reason,
source topic and time; redrive republishes the exact original (bytes, key, headers; a
2 MB original read back from its source position), once: a second redrive, or two at
the same time, change nothing."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from pactmesh_contracts.events import DeadLetter
from pactmesh_contracts.topics import DEAD_LETTERS, REQUESTS_ACCEPTED, TOOL_RESULTS
from pactmesh_harness.faults import allow_message_bytes
from pactmesh_kit import dlq
from pactmesh_kit.cli import main
from pactmesh_kit.kafka import Reject
from pactmesh_kit.kafka.dead_letters import DeadLetters
from pactmesh_kit.settings import KitSettings

BIG = 2_000_000


@pytest.fixture
def settings(topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> KitSettings:
    monkeypatch.setenv("PACTMESH_TOPIC_PREFIX", topic_prefix)
    return KitSettings()


async def _publish(
    settings: KitSettings, topic: str, *messages: tuple[bytes | None, bytes, Any]
) -> list[Any]:
    producer = AIOKafkaProducer(**settings.kafka_client_options(), max_request_size=4 * 1_048_576)
    await producer.start()
    try:
        return [
            await producer.send_and_wait(topic, value, key=key, headers=headers)
            for key, value, headers in messages
        ]
    finally:
        await producer.stop()


def _letter(
    settings: KitSettings, meta: Any, key: bytes, value: bytes, headers: Any, **changes: Any
) -> DeadLetter:
    record = ConsumerRecord(
        meta.topic, meta.partition, meta.offset, 0, 0, key, value, None, 1, 1, headers
    )
    service = changes.pop("service", "routing")
    named = settings.model_copy(update={"service_name": service})
    letters = DeadLetters(None, named)  # type: ignore[arg-type]  # letter_for publishes nothing
    letter = letters.letter_for(record, Reject(changes.pop("code", "invalid"), "bad"), group="g")
    return letter.model_copy(update=changes)


async def _read_source(settings: KitSettings, topic: str) -> list[ConsumerRecord[Any, Any]]:
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1_048_576,
        fetch_max_bytes=8 * 1_048_576,
    )
    tps = await dlq.partitions_of(settings, topic)
    await consumer.start()
    found: list[ConsumerRecord[Any, Any]] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


async def _read_at_least(
    settings: KitSettings, topic: str, count: int, deadline_s: float = 30
) -> list[ConsumerRecord[Any, Any]]:
    """The topic's committed records once there are at least ``count`` (a redrive's
    transaction may not be readable the very moment it commits), or as they are at the
    deadline."""
    give_up = asyncio.get_running_loop().time() + deadline_s
    while True:
        found = await _read_source(settings, topic)
        if len(found) >= count or asyncio.get_running_loop().time() > give_up:
            return found
        await asyncio.sleep(0.2)


def _encoded(letters: list[DeadLetter]) -> list[tuple[bytes | None, bytes, Any]]:
    return [(None, letter.model_dump_json().encode(), []) for letter in letters]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["dlq", *argv])
    return code, capsys.readouterr().out


def test_list_show_and_redrive_once(
    settings: KitSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    source = REQUESTS_ACCEPTED.qualified(settings.topic_prefix)
    other = TOOL_RESULTS.qualified(settings.topic_prefix)
    allow_message_bytes(settings.kafka_client_options(), source, 4 * 1_048_576)
    small = (b"wf-1", b'{"not": "an envelope"}', [("x-trace", b"abc"), ("content-type", b"x")])
    big = (b"wf-2", b'{"blob": "' + b"z" * BIG + b'"}', [("x-trace", b"big")])
    refused: tuple[bytes, bytes, Any] = (b"wf-3", b'{"refused": true}', [])
    [m_small, m_big] = asyncio.run(_publish(settings, source, small, big))
    [m_refused] = asyncio.run(_publish(settings, other, refused))
    old = datetime.now(UTC) - timedelta(days=2)
    letters = [
        _letter(settings, m_small, *small),
        _letter(settings, m_big, *big, code="too_large"),
        _letter(settings, m_refused, *refused, service="delivery", code="refused"),
        _letter(settings, m_small, *small, service="intake", occurred_at=old),
    ]
    assert letters[1].original_truncated, "a 2 MB original is kept by reference"
    dlq_topic = DEAD_LETTERS.qualified(settings.topic_prefix)
    asyncio.run(_publish(settings, dlq_topic, *_encoded(letters)))

    code, out = _cli(capsys, "list", "--json")
    assert code == 0
    assert len(out.splitlines()) == 4
    _, out = _cli(capsys, "list", "--json", "--service", "routing")
    assert {json.loads(line)["error_code"] for line in out.splitlines()} == {"invalid", "too_large"}
    _, out = _cli(capsys, "list", "--json", "--reason", "refused")
    assert [json.loads(line)["service"] for line in out.splitlines()] == ["delivery"]
    _, out = _cli(capsys, "list", "--json", "--topic", "tool.results")
    assert [json.loads(line)["source_topic"] for line in out.splitlines()] == [other]
    _, out = _cli(capsys, "list", "--json", "--until", "1d")
    assert [json.loads(line)["service"] for line in out.splitlines()] == ["intake"]
    _, out = _cli(capsys, "list", "--since", "1h")
    assert len(out.splitlines()) == 4  # a header and three rows
    code, out = _cli(capsys, "show", letters[1].source_ref)
    assert code == 0
    shown = json.loads(out)
    assert (shown["original_size"], shown["original_truncated"]) == (len(big[1]), True)
    assert shown["original_preview"].startswith('{"blob": "zzz')

    before = asyncio.run(_read_source(settings, source))
    code, out = _cli(capsys, "redrive", "--service", "routing", "--since", "1h")
    assert (code, out.strip()) == (0, "redriven 2, already redriven 0, not redrivable 0")
    after = asyncio.run(_read_at_least(settings, source, len(before) + 2))
    seen = {(r.partition, r.offset) for r in before}
    again = sorted((r for r in after if (r.partition, r.offset) not in seen), key=lambda r: r.key)
    assert [(r.key, r.value) for r in again] == [small[:2], big[:2]]
    for record, (key, _, headers), meta in zip(again, [small, big], [m_small, m_big], strict=True):
        ref = f"{meta.topic}/{meta.partition}/{meta.offset}"
        assert record.key == key
        assert list(record.headers) == [*headers, (dlq.REDRIVEN_FROM, ref.encode())]

    code, out = _cli(capsys, "redrive", "--all")
    assert out.strip() == "redriven 1, already redriven 2, not redrivable 0"
    code, out = _cli(capsys, "redrive", "--all")
    assert out.strip() == "redriven 0, already redriven 3, not redrivable 0"
    final = asyncio.run(_read_source(settings, source))
    assert len(final) == len(after), "redriving again changed nothing"
    _, out = _cli(capsys, "list")
    assert [line.split()[6] for line in out.splitlines()[1:]] == ["yes"] * 4


def test_two_redrives_at_once_publish_each_original_once(settings: KitSettings) -> None:
    source = REQUESTS_ACCEPTED.qualified(settings.topic_prefix)
    messages: list[tuple[bytes, bytes, Any]] = [
        (f"wf-{n}".encode(), f'{{"n": {n}}}'.encode(), []) for n in range(300)
    ]
    metas = asyncio.run(_publish(settings, source, *messages))
    letters = [_letter(settings, m, *msg) for m, msg in zip(metas, messages, strict=True)]
    dlq_topic = DEAD_LETTERS.qualified(settings.topic_prefix)
    asyncio.run(_publish(settings, dlq_topic, *_encoded(letters)))

    async def redrive() -> dlq.Outcome:
        found = await dlq.dead_letters(settings, dlq.Filters())
        async with dlq.Redrive(settings) as run:
            return await run.run(found)

    async def both() -> list[Any]:
        return list(await asyncio.gather(redrive(), redrive(), return_exceptions=True))

    outcomes = asyncio.run(both())
    print(f"\ntwo redrives at once: {[type(o).__name__ for o in outcomes]}")
    everything = asyncio.run(_read_at_least(settings, source, 2 * len(messages)))
    published = [r for r in everything if r.headers]
    counts = Counter(record.key for record in published)
    assert {type(o) for o in outcomes} <= {dlq.Outcome, dlq.TakenOver}
    assert [type(o) for o in outcomes].count(dlq.Outcome) >= 1, "the later run completes"
    assert set(counts) == {key for key, _, _ in messages}
    assert set(counts.values()) == {1}, "each original republished exactly once"


def test_a_redrive_fenced_midway_stops_as_taken_over(settings: KitSettings) -> None:
    """The race the test above leaves to chance, forced: a second redrive starts while
    the first has a transaction open. aiokafka records the fence on the first one's
    transaction and refuses its next send with ``IllegalOperation``; the first run ends
    as ``TakenOver`` (its open transaction aborted, nothing of it visible) and the
    second republishes every original once."""
    source = REQUESTS_ACCEPTED.qualified(settings.topic_prefix)
    messages: list[tuple[bytes, bytes, Any]] = [
        (f"wf-{n}".encode(), f'{{"n": {n}}}'.encode(), []) for n in range(60)
    ]
    metas = asyncio.run(_publish(settings, source, *messages))
    letters = [_letter(settings, m, *msg) for m, msg in zip(metas, messages, strict=True)]
    asyncio.run(
        _publish(settings, DEAD_LETTERS.qualified(settings.topic_prefix), *_encoded(letters))
    )

    class FencedMidway(dlq.Redrive):
        """Starts the other redrive after its first send, then sends on until the
        sender has recorded the fence (a send to a partition not yet in the transaction
        asks the coordinator, which answers that a newer producer holds the id)."""

        other: dlq.Redrive | None = None
        fence_recorded = False

        async def _send(self, letter: DeadLetter, source: Any) -> None:
            await super()._send(letter, source)
            if self.other is None:
                self.other = await dlq.Redrive(settings).__aenter__()
            elif not self.fence_recorded:
                give_up = asyncio.get_running_loop().time() + 5
                while asyncio.get_running_loop().time() < give_up:
                    if dlq._recorded_failure(self._producer) is not None:
                        self.fence_recorded = True
                        break
                    await asyncio.sleep(0.05)

    async def scenario() -> tuple[BaseException | dlq.Outcome, dlq.Outcome, bool]:
        found = await dlq.dead_letters(settings, dlq.Filters())
        first = FencedMidway(settings)
        async with first:
            try:
                ended: BaseException | dlq.Outcome = await first.run(found)
            except Exception as exc:  # what the run ended with is the assertion
                ended = exc
        second = first.other
        assert second is not None, "the second redrive started (and was entered) midway"
        try:
            return ended, await second.run(found), first.fence_recorded
        finally:
            await second.__aexit__(None, None, None)

    ended, second, fence_recorded = asyncio.run(scenario())
    assert fence_recorded, "the fence reached the first run in its open transaction"
    assert isinstance(ended, dlq.TakenOver), repr(ended)
    assert (len(second.redriven), len(second.already)) == (len(messages), 0)
    published = [r for r in asyncio.run(_read_at_least(settings, source, 2 * len(messages)))]
    counts = Counter(r.key for r in published if r.headers)
    assert counts == Counter({key: 1 for key, _, _ in messages})
