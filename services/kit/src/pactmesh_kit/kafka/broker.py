"""A service's Kafka side: the broker, configured once with the mesh's guarantees, and
the one way to subscribe and publish on it.

Guarantees set here, once, for every service:

* producers use ``acks=all`` with idempotence on;
* every client authenticates as the service's own principal when the settings name one
  (SASL, over TLS or not: ``KitSettings.kafka_security``), so that the cluster's ACLs
  (``pactmesh_kit.acls``) hold each service to the topics it owns;
* consumers never auto-create topics, take keyed batches and commit a batch's offsets
  only after every handler in it returned (``pactmesh_kit.kafka.subscriber``);
* a message that cannot be decoded into its topic's contract, or whose handler refuses
  it, goes to the dead-letter topic with its original bytes and the reason, and the
  consumer carries on; a message whose handler fails otherwise (a dependency is down)
  is retried with backoff while its partition is paused, and the service reports not
  ready (``Kafka.stalls``) until it goes through (``pactmesh_kit.kafka.policy``);
* a producer aiokafka gives up on for good (after batches expired during an outage) is
  replaced by a new one (``_internal/renewal``);
* on shutdown (``Kafka.drain``), no new batch is taken, the batches in hand finish and
  commit within ``shutdown_grace_s``, and retries in progress are given up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from faststream.kafka import KafkaBroker
from opentelemetry import metrics, trace
from opentelemetry.metrics import Meter
from opentelemetry.sdk.trace import TracerProvider
from pactmesh_contracts.topics import Topic

from pactmesh_kit.kafka._internal.instruments import KafkaInstruments
from pactmesh_kit.kafka._internal.renewal import ProducerRenewal
from pactmesh_kit.kafka._internal.tracing import TRACER_NAME, publish_spans
from pactmesh_kit.kafka.dead_letters import DeadLetters
from pactmesh_kit.kafka.policy import FailurePolicy
from pactmesh_kit.kafka.publisher import EventPublisher
from pactmesh_kit.kafka.subscriber import (
    BATCH_MAX_RECORDS,
    Handler,
    KeyedSubscriber,
    Record,
    Stall,
    Subscription,
    subscribe,
)
from pactmesh_kit.settings import KitSettings

H = TypeVar("H", bound=Handler)


def make_broker(
    settings: KitSettings,
    *,
    tracer_provider: TracerProvider | None,
    middlewares: Sequence[Any] = (),
) -> KafkaBroker:
    """A FastStream Kafka broker configured with the mesh's delivery guarantees, with
    ``middlewares`` around every publish (inside the publish span).

    A plain broker started by the app's lifespan, not FastStream's FastAPI router: that
    integration is deprecated in FastStream 0.7 and re-resolves handler arguments the
    FastAPI way, which would bypass the contract decoding of the subscriber.
    """
    outer: list[Any] = []
    if tracer_provider is not None:
        untraced = frozenset(settings.topic_prefix + name for name in settings.untraced_topics)
        outer.append(publish_spans(tracer_provider.get_tracer(TRACER_NAME), untraced=untraced))
    # FastStream takes a string as one server (aiokafka would split it): a cluster's
    # comma-separated list goes as a list.
    servers = [s.strip() for s in settings.kafka_bootstrap_servers.split(",") if s.strip()]
    return KafkaBroker(
        servers,
        client_id=settings.service_name,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.kafka_linger_ms,
        allow_auto_create_topics=False,
        security=settings.kafka_security(),
        # The handlers in flight at shutdown get the second third of the service's grace.
        graceful_timeout=settings.shutdown_phase_s,
        middlewares=[*outer, *middlewares],
        description=f"pactmesh {settings.service_name} service",
        logger=logging.getLogger(f"pactmesh.{settings.service_name}.kafka"),
    )


class Kafka:
    """One service's broker with its settings, tracer provider and failure policy."""

    def __init__(
        self,
        settings: KitSettings,
        *,
        tracer_provider: TracerProvider | None,
        policy: FailurePolicy | None = None,
        meter: Meter | None = None,
    ) -> None:
        """``tracer_provider`` traces every publish and every consumed message (the
        global provider's tracer when ``None``: no spans unless one is set globally);
        ``meter`` measures handlers, consumer lag and dead letters (none when ``None``)."""
        self.settings = settings
        # A producer aiokafka gives up on (after an outage) is replaced, not kept dead.
        self.renewal = ProducerRenewal(lambda: self.broker)
        self.broker = make_broker(
            settings, tracer_provider=tracer_provider, middlewares=[self.renewal.middleware()]
        )
        self.instruments = KafkaInstruments(meter or metrics.NoOpMeter("pactmesh"))
        self.dead_letters = DeadLetters(self.broker, settings, instruments=self.instruments)
        self.policy = policy or FailurePolicy(
            backoff_initial_s=settings.retry_backoff_initial_s,
            backoff_max_s=settings.retry_backoff_max_s,
        )
        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer(TRACER_NAME)
        self._subscribers: list[KeyedSubscriber] = []

    def stalls(self) -> list[Stall]:
        """Partitions taking no new work while a message of theirs is retried: while
        there are any, the service is not ready."""
        return [stall for subscriber in self._subscribers for stall in subscriber.stalls()]

    async def drain(self) -> None:
        """Take no new batch and give up retries in progress; then ``broker.stop()``
        waits (up to ``shutdown_grace_s``) for the batches in hand, which commit."""
        await asyncio.gather(*(subscriber.drain() for subscriber in self._subscribers))

    def subscriber(
        self,
        *topics: Topic,
        name: str | None = None,
        per_instance: bool = False,
        from_latest: bool = False,
        max_records: int = BATCH_MAX_RECORDS,
        select: Callable[[Record], bool] | None = None,
        lenient: bool = False,
        description: str | None = None,
        max_bytes: int | None = None,
        wanted: asyncio.Event | None = None,
    ) -> Callable[[H], H]:
        """Subscribe the decorated handler to ``topics`` (see ``Subscription`` for the
        options); ``name`` defaults to the one topic's name."""
        if name is None and len(topics) != 1:
            raise ValueError("a subscriber of several topics needs a name")
        subscription = Subscription(
            topics=topics,
            name=name or topics[0].name,
            per_instance=per_instance,
            from_latest=from_latest,
            max_records=max_records,
            select=select,
            lenient=lenient,
            description=description,
            max_bytes=max_bytes,
            wanted=wanted,
        )

        def register(handler: H) -> H:
            keyed = subscribe(
                self.broker,
                subscription,
                handler,
                settings=self.settings,
                tracer=self._tracer,
                dead_letters=self.dead_letters,
                policy=self.policy,
                instruments=self.instruments,
            )
            self._subscribers.append(keyed)
            return handler

        return register

    def subscription(self, name: str) -> KeyedSubscriber:
        """The subscriber registered as ``name``."""
        for keyed in self._subscribers:
            if keyed.name == name:
                return keyed
        raise LookupError(f"no subscription {name!r}")

    def publisher(self, *produces: Topic) -> EventPublisher:
        """A publisher of enveloped events, documenting ``produces`` in AsyncAPI."""
        return EventPublisher(self.broker, self.settings, produces=produces)
