"""The dead-letter topic: records of messages a consumer would not take, bounded in size.

A record keeps the original message whole (bytes, key, headers) when it fits in
``dead_letter_max_bytes``; a larger original is kept by reference: its size, SHA-256 and
first bytes, with its source topic, partition and offset, where the message itself stays
for as long as the topic retains it (``pactmesh dlq`` reads it from there). A dead-letter
record therefore never exceeds the topic's limit, whatever was refused.
"""

from __future__ import annotations

import base64
import hashlib
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

HEAD_BYTES = 4096
"""How much of an original too large to keep whole a record still shows."""
MAX_ERROR_CHARS = 4000
MAX_HEADER_CHARS = 1024

CREDENTIAL_HEADERS = frozenset({"authorization"})
"""Headers whose values are credentials (an upstream's bearer token): a dead letter keeps
that the header was there, never its value, so the dead-letter topic and whoever reads
it hold no one's token."""
REDACTED = "[redacted]"


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
        self._max_bytes = settings.dead_letter_max_bytes

    async def publish(self, letter: DeadLetter, key: bytes | None) -> None:
        """Publish ``letter`` (bounded), keyed like the message it describes; waits for the
        ack."""
        letter = bounded(letter, self._max_bytes)
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
        """A dead-letter record describing ``record`` and why it was refused, at most
        ``dead_letter_max_bytes`` long once encoded."""
        value = record.value or b""
        letter = DeadLetter(
            service=self._service,
            consumer_group=group,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            original_key_b64=_b64(record.key),
            original_value_b64=_b64(value) or "",
            original_headers=redacted(headers_of(record)),
            error_code=verdict.code,
            error=verdict.reason[:MAX_ERROR_CHARS],
            errors=verdict.errors,
            original_size=len(value),
            original_sha256=hashlib.sha256(value).hexdigest(),
        )
        return bounded(letter, self._max_bytes)


def bounded(letter: DeadLetter, max_bytes: int) -> DeadLetter:
    """``letter`` itself if it fits in ``max_bytes``; else with the original reduced to
    its first bytes (a reference: size, hash, position), and if that is still too large
    (huge keys or headers), with those and the field errors cut too."""
    if _size(letter) <= max_bytes:
        return letter
    head = letter.original_value()[:HEAD_BYTES]
    letter = letter.model_copy(
        update={"original_value_b64": _b64(head) or "", "original_truncated": True}
    )
    if _size(letter) <= max_bytes:
        return letter
    headers = dict(list(letter.original_headers.items())[:32])
    letter = letter.model_copy(
        update={
            "original_key_b64": (letter.original_key_b64 or "")[:MAX_HEADER_CHARS] or None,
            "original_headers": {k[:256]: v[:MAX_HEADER_CHARS] for k, v in headers.items()},
            "errors": letter.errors[:3],
            "error": letter.error[:MAX_HEADER_CHARS],
        }
    )
    if _size(letter) > max_bytes:  # 32 headers of 1.3 KiB and the rest: some 50 KiB
        raise ValueError(f"a dead letter cannot be made to fit in {max_bytes} bytes")
    return letter


def _size(letter: DeadLetter) -> int:
    return len(encode(letter))


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def redacted(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the values of credential headers replaced by ``[redacted]``."""
    return {k: REDACTED if k.lower() in CREDENTIAL_HEADERS else v for k, v in headers.items()}
