"""The mesh's Kafka layer, shaped like FastStream's own: the broker (``broker``), the
one subscriber (``subscriber``), the publisher (``publisher``), dead letters
(``dead_letters``) and the one failure policy (``policy``); private code in
``_internal``.

    kafka = Kafka(settings, tracer_provider=provider)

    @kafka.subscriber(REQUESTS_ACCEPTED)
    async def on_accepted(event: Envelope[RequestAccepted], record: Record) -> None: ...
"""

from pactmesh_kit.kafka.broker import Kafka, make_broker
from pactmesh_kit.kafka.dead_letters import DeadLetters
from pactmesh_kit.kafka.policy import FailurePolicy, Reject, Retry
from pactmesh_kit.kafka.publisher import JSON_HEADERS, EventPublisher, encode
from pactmesh_kit.kafka.subscriber import (
    BATCH_MAX_RECORDS,
    Handler,
    KeyedSubscriber,
    Record,
    Stall,
    Subscription,
    consumer_group,
)

__all__ = [
    "BATCH_MAX_RECORDS",
    "JSON_HEADERS",
    "DeadLetters",
    "EventPublisher",
    "FailurePolicy",
    "Handler",
    "Kafka",
    "KeyedSubscriber",
    "Record",
    "Reject",
    "Retry",
    "Stall",
    "Subscription",
    "consumer_group",
    "encode",
    "make_broker",
]
