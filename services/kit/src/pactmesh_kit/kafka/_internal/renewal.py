"""A producer aiokafka gave up on, replaced.

aiokafka's idempotent producer fails the batches that wait longer than its request
timeout for a partition leader (a broker down for a while). Their sequence numbers are
then missing on the broker, whose answer to the next batch is ``OutOfOrderSequenceNumber``:
the producer's sender task stops for good, and every later send raises it. Nothing
recovers it (the Java client bumps the producer epoch, KIP-360; aiokafka does not), so a
service would stay stalled after the broker came back.

Every publish goes through ``ProducerRenewal.middleware``: when one fails that way, the
broker's producer is replaced by a new one (a new producer id, sequences from zero), once
per failure however many publishes saw it. What failed is retried by its caller as any
failed publish is (a handler's message is retried in place); a message the old producer
had written already is written again, with the same event id, which consumers
deduplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber
from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker

logger = logging.getLogger("pactmesh_kit.kafka")

STOP_WAIT_S = 5.0


def is_fatal(error: BaseException) -> bool:
    """Whether ``error`` means the producer's sender has stopped for good."""
    if isinstance(error, OutOfOrderSequenceNumber):
        return True
    # what aiokafka's sender routine wraps any other error it dies of in
    return type(error) is KafkaError and "during batch delivery" in str(error)


class ProducerRenewal:
    """Replaces the producer of the broker ``broker()`` returns when it fails for good."""

    def __init__(self, broker: Callable[[], KafkaBroker]) -> None:
        self._broker = broker
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Future[None]] = set()
        self.generation = 0
        """How many times the producer was replaced."""

    async def renew(self, seen: int, error: BaseException) -> None:
        """Replace the producer, unless it was replaced since generation ``seen``."""
        async with self._lock:
            if seen != self.generation:
                return
            broker = self._broker()
            fast = broker.config.broker_config.producer
            logger.warning("the Kafka producer stopped for good (%r): replacing it", error)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_WAIT_S):
                    await fast.disconnect()
            # The options FastStream made the first producer with (cluster, security,
            # acks, idempotence), which it keeps on the broker only.
            producer = AIOKafkaProducer(**broker._connection_kwargs)
            # the implementation keeps them; the declared type does not say so
            serializer, codec = getattr(fast, "serializer", None), getattr(fast, "codec", None)
            await fast.connect(producer, serializer=serializer, codec=codec)
            self.generation += 1
            logger.warning("the Kafka producer was replaced (%d so far)", self.generation)

    def watch(self, seen: int, result: Any) -> Any:
        """``result`` of a publish; if it is a future that fails for good, a renewal
        follows."""
        if isinstance(result, asyncio.Future):
            result.add_done_callback(lambda done: self._after(seen, done))
        return result

    def _after(self, seen: int, done: asyncio.Future[Any]) -> None:
        if done.cancelled() or (error := done.exception()) is None or not is_fatal(error):
            return
        self._tasks.add(task := asyncio.ensure_future(self.renew(seen, error)))
        task.add_done_callback(self._tasks.discard)

    def middleware(self) -> type[BaseMiddleware]:
        """FastStream middleware renewing the producer when a publish fails for good."""
        renewal = self

        class RenewingProducer(BaseMiddleware):
            async def publish_scope(
                self, call_next: Callable[[Any], Awaitable[Any]], cmd: Any
            ) -> Any:
                seen = renewal.generation
                try:
                    return renewal.watch(seen, await call_next(cmd))
                except Exception as error:
                    if is_fatal(error):
                        await renewal.renew(seen, error)
                    raise

        return RenewingProducer
