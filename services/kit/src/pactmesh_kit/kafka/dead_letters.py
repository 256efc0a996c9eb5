"""The dead-letter topic: records of messages a consumer would not take, kept whole."""

from __future__ import annotations

import base64
import logging

from faststream.kafka import KafkaBroker
from pactmesh_contracts.events import DeadLetter
from pactmesh_contracts.topics import DEAD_LETTERS

from pactmesh_kit.kafka._internal.batch import Record
from pactmesh_kit.kafka._internal.instruments import KafkaInstruments
from pactmesh_kit.kafka._internal.tracing import headers_of
from pactmesh_kit.kafka.policy import Reject
from pactmesh_kit.kafka.publisher import JSON_HEADERS, encode
from pactmesh_kit.settings import KitSettings

logger = logging.getLogger(__name__)


class DeadLetters:
    """Publishes dead-letter records on the dead-letter topic."""

    def __init__(
        self,
        broker: KafkaBroker,
        settings: KitSettings,
        *,
        instruments: KafkaInstruments | None = None,
    ) -> None:
        self._broker = broker
        self._instruments = instruments
        self._topic = DEAD_LETTERS.qualified(settings.topic_prefix)
        self._service = settings.service_name

    async def publish(self, letter: DeadLetter, key: bytes | None) -> None:
        """Publish ``letter``, keyed like the message it describes; waits for the ack."""
        logger.warning(
            "dead-lettering %s[%d]@%d: %s",
            letter.source_topic,
            letter.source_partition,
            letter.source_offset,
            letter.error.splitlines()[0] if letter.error else letter.error_code,
        )
        await self._broker.publish(encode(letter), self._topic, key=key, headers=JSON_HEADERS)
        if self._instruments is not None:
            self._instruments.dead_lettered(topic=letter.source_topic, reason=letter.error_code)

    async def reject(self, record: Record, verdict: Reject, *, group: str) -> None:
        """Dead-letter ``record`` for the reason ``verdict`` gives."""
        await self.publish(self.letter_for(record, verdict, group=group), record.key)

    def letter_for(self, record: Record, verdict: Reject, *, group: str | None) -> DeadLetter:
        """A dead-letter record describing ``record`` and why it was refused."""
        return DeadLetter(
            service=self._service,
            consumer_group=group,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            original_key_b64=_b64(record.key),
            original_value_b64=_b64(record.value or b"") or "",
            original_headers=headers_of(record),
            error_code=verdict.code,
            error=verdict.reason[:8000],
            errors=verdict.errors,
        )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()
