"""Smoke check for the local Kafka broker started by infra/kafka/kafka.sh.

Needs aiokafka (tested with 0.14.0). Bootstrap servers come from KAFKA_BOOTSTRAP_SERVERS
(default 127.0.0.1:9092). Exits 0 when every check passes, 1 otherwise.

Checks:
  1. AIOKafkaAdminClient creates a topic with 6 partitions.
  2. AIOKafkaProducer(acks="all", enable_idempotence=True) sends 100 string-keyed messages.
  3. A consumer group (enable_auto_commit=False, manual commit) reads all 100 back; committed
     offsets add up to 100 and each key stayed on one partition.
  4. Producing to a topic that does not exist fails and does NOT create it
     (auto.create.topics.enable=false).
The test topic is deleted at the end.

    python infra/kafka/smoke_check.py
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
N_MESSAGES = 100
N_PARTITIONS = 6
N_KEYS = 10


def step(msg: str) -> None:
    print(f"[smoke] {msg}", flush=True)


async def create_topic(admin: AIOKafkaAdminClient, topic: str) -> None:
    await admin.create_topics(
        [NewTopic(name=topic, num_partitions=N_PARTITIONS, replication_factor=1)]
    )
    # Wait until the topic and all its partitions are visible in metadata.
    deadline = time.monotonic() + 15
    while True:
        described = await admin.describe_topics([topic])
        parts = described[0].get("partitions", []) if described else []
        if described and described[0].get("error_code", 0) == 0 and len(parts) == N_PARTITIONS:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"topic {topic} not visible with {N_PARTITIONS} partitions: {described!r}"
            )
        await asyncio.sleep(0.2)


async def produce(topic: str) -> dict[str, set[int]]:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True)
    await producer.start()
    key_partitions: dict[str, set[int]] = {}
    try:
        futures = []
        for i in range(N_MESSAGES):
            key = f"key-{i % N_KEYS}"
            fut = await producer.send(topic, key=key.encode(), value=f"msg-{i}".encode())
            futures.append((key, fut))
        for key, fut in futures:
            md = await fut
            key_partitions.setdefault(key, set()).add(md.partition)
    finally:
        await producer.stop()
    return key_partitions


async def consume(topic: str, group: str) -> tuple[set[str], dict[str, set[int]], int, float]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    t0 = time.monotonic()
    await consumer.start()
    values: set[str] = set()
    key_partitions: dict[str, set[int]] = {}
    first_batch_at = None
    try:
        deadline = time.monotonic() + 60
        while len(values) < N_MESSAGES and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for _tp, records in batches.items():
                for rec in records:
                    values.add(rec.value.decode())
                    key_partitions.setdefault(rec.key.decode(), set()).add(rec.partition)
            if batches:
                if first_batch_at is None:
                    first_batch_at = time.monotonic() - t0
                await consumer.commit()
        committed = 0
        for p in range(N_PARTITIONS):
            off = await consumer.committed(TopicPartition(topic, p))
            committed += off or 0
    finally:
        await consumer.stop()
    return values, key_partitions, committed, first_batch_at if first_batch_at is not None else -1.0


async def produce_to_missing(admin: AIOKafkaAdminClient, missing: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, request_timeout_ms=3000)
    await producer.start()
    try:
        try:
            await asyncio.wait_for(producer.send_and_wait(missing, b"should-not-exist"), timeout=15)
        except (TimeoutError, KafkaError) as exc:
            step(f"produce to missing topic failed as expected: {type(exc).__name__}")
        else:
            raise AssertionError(
                f"produce to missing topic {missing} succeeded (auto-create is on?)"
            )
    finally:
        await producer.stop()
    topics = await admin.list_topics()
    if missing in topics:
        raise AssertionError(f"topic {missing} was auto-created")
    step(f"topic {missing} was not auto-created")


async def main() -> int:
    # aiokafka logs every metadata retry (e.g. "Topic ... not found") at ERROR; the checks
    # below raise on real failures, so keep its log quiet unless SMOKE_VERBOSE is set.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not os.environ.get("SMOKE_VERBOSE"):
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    suffix = uuid.uuid4().hex[:8]
    topic = f"pactmesh-smoke-{suffix}"
    group = f"pactmesh-smoke-group-{suffix}"
    missing = f"pactmesh-smoke-missing-{suffix}"
    step(f"bootstrap={BOOTSTRAP} topic={topic}")

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    created = False
    try:
        t = time.monotonic()
        await create_topic(admin, topic)
        created = True
        step(f"created topic with {N_PARTITIONS} partitions in {time.monotonic() - t:.2f}s")

        t = time.monotonic()
        sent_parts = await produce(topic)
        step(
            f"produced {N_MESSAGES} messages (acks=all, idempotent) in {time.monotonic() - t:.2f}s"
        )

        t = time.monotonic()
        values, recv_parts, committed, first = await consume(topic, group)
        step(
            f"consumed {len(values)} distinct messages in {time.monotonic() - t:.2f}s "
            f"(group join + first batch {first:.2f}s), committed offsets total {committed}"
        )
        expected = {f"msg-{i}" for i in range(N_MESSAGES)}
        if values != expected:
            raise AssertionError(f"missing messages: {sorted(expected - values)[:10]}")
        if committed != N_MESSAGES:
            raise AssertionError(f"committed offsets add up to {committed}, expected {N_MESSAGES}")
        for key, parts in recv_parts.items():
            if len(parts) != 1 or parts != sent_parts.get(key):
                raise AssertionError(
                    f"key {key} spread over partitions {parts} (sent to {sent_parts.get(key)})"
                )
        used = set().union(*recv_parts.values())
        step(f"each of {N_KEYS} keys stayed on one partition; partitions used: {sorted(used)}")

        await produce_to_missing(admin, missing)
    finally:
        if created:
            try:
                await admin.delete_topics([topic])
            except KafkaError as exc:  # cleanup only
                step(f"warning: could not delete {topic}: {exc!r}")
        await admin.close()
    step("OK")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except (
        Exception
    ) as exc:  # report any failure (e.g. UnsupportedVersion against Kafka 4.x) and exit 1
        import traceback

        traceback.print_exc()
        print(f"[smoke] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
