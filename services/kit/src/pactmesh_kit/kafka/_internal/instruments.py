"""The Kafka layer's metrics: handler duration and outcome per topic, consumer lag per
group and partition, dead letters by reason."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import TopicPartition
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from pactmesh_kit.kafka._internal.batch import Record

DESTINATION = "messaging.destination.name"
GROUP = "messaging.consumer.group.name"
PARTITION = "messaging.destination.partition.id"
ERROR_TYPE = "error.type"
HANDLER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class KafkaInstruments:
    """Instruments shared by a service's subscribers and its dead-letter publisher."""

    def __init__(self, meter: Meter) -> None:
        # The OpenTelemetry messaging conventions' name: its count is the handler rate.
        self._duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="How long handling one consumed message took, by topic and outcome",
            explicit_bucket_boundaries_advisory=HANDLER_BUCKETS,
        )
        self._dead = meter.create_counter(
            "pactmesh.dead_letters", unit="{message}", description="Messages dead-lettered"
        )
        self._lag: dict[tuple[str, str, int], int] = {}
        meter.create_observable_gauge(
            "messaging.kafka.consumer.lag",
            callbacks=[self._observe_lag],
            unit="{message}",
            description="Messages between a group's last handled offset and the partition's end",
        )

    def handled(self, record: Record, *, group: str, seconds: float, error: str | None) -> None:
        """One message was handled (``error``: the failure's class, if it failed)."""
        attributes = {DESTINATION: record.topic, GROUP: group}
        if error is not None:
            attributes[ERROR_TYPE] = error
        self._duration.record(seconds, attributes)

    def dead_lettered(self, *, topic: str, reason: str) -> None:
        """One message went to the dead-letter topic, for ``reason`` (its error code)."""
        self._dead.add(1, {DESTINATION: topic, "pactmesh.dead_letter.reason": reason})

    def consumed(self, records: Sequence[Record], *, group: str, consumer: Any) -> None:
        """After a batch: each partition's lag behind its end, as the consumer last
        fetched it (``highwater``, no request of its own). A consumer that cannot tell
        (FastStream's in-memory test broker's) reports no lag."""
        highwater = getattr(consumer, "highwater", None)
        if highwater is None:
            return
        last: dict[tuple[str, int], int] = {}
        for record in records:
            last[(record.topic, record.partition)] = record.offset
        for (topic, partition), offset in last.items():
            end = highwater(TopicPartition(topic, partition))
            if end is not None:
                self._lag[(group, topic, partition)] = max(0, end - offset - 1)

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        for (group, topic, partition), lag in list(self._lag.items()):
            yield Observation(lag, {GROUP: group, DESTINATION: topic, PARTITION: str(partition)})
