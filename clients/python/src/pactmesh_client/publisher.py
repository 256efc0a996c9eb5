"""Publishing requests on the mesh's inbound topic, as an upstream system does."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import RequestSubmitted
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.topics import DEFAULT_PREFIX, REQUESTS_INBOUND

from pactmesh_client.errors import PactmeshClientError
from pactmesh_client.security import KafkaSecurity


def _trace_context() -> dict[str, str]:
    """The caller's W3C trace context, when it uses OpenTelemetry (not a dependency)."""
    try:
        from opentelemetry.propagate import inject
    except ImportError:  # pragma: no cover - depends on the caller's environment
        return {}
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def message_headers(event: Envelope[Any]) -> list[tuple[str, bytes]]:
    """The Kafka headers the mesh's own publishers set (content type and event type),
    plus the caller's trace context when there is one."""
    headers = {"content-type": "application/json", "event-type": event.type}
    headers.update(_trace_context())
    return [(name, value.encode()) for name, value in headers.items()]


class RequestPublisher:
    """Submits typed requests on ``<prefix>requests.inbound``.

    An async context manager around an idempotent ``acks=all`` producer; each request is
    a ``request.submitted.v1`` envelope keyed by its workflow id, which is also the id
    its result carries back::

        async with RequestPublisher("127.0.0.1:9092") as requests:
            workflow_id = await requests.submit(
                text="Refund order 4411", tenant="acme", principal=principal
            )
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic_prefix: str = DEFAULT_PREFIX,
        client_id: str = "pactmesh-client",
        security: KafkaSecurity | None = None,
        **producer_options: Any,
    ) -> None:
        """``security`` is how to reach a secured cluster (the standard ``KAFKA_*``
        variables when not given: ``KafkaSecurity.from_env()``); ``producer_options`` go
        to ``aiokafka.AIOKafkaProducer`` as they are."""
        self.topic = REQUESTS_INBOUND.qualified(topic_prefix)
        """The inbound topic's name on the cluster."""
        self._options: dict[str, Any] = {
            **(security or KafkaSecurity.from_env()).options(),
            **producer_options,
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
        }
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Self:
        producer = AIOKafkaProducer(**self._options)
        await producer.start()
        self._producer = producer
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def submit(
        self,
        *,
        text: str,
        tenant: str,
        principal: Principal,
        requested_workflow: str | None = None,
        metadata: Mapping[str, str] | None = None,
        workflow_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Publish one request and return its workflow id, once every in-sync replica has
        it. ``workflow_id`` is the request's id (a new UUIDv7 when not given); pass the
        same one to retry a submission, so that it names the same request.

        Raises ``pydantic.ValidationError`` before publishing anything when the request
        breaks its contract (empty text, a malformed tenant or workflow name...).
        """
        payload = RequestSubmitted(
            text=text, requested_workflow=requested_workflow, metadata=dict(metadata or {})
        )
        event = new_event(
            payload, workflow_id=workflow_id or uuid7(), tenant=tenant, principal=principal
        )
        await self.publish(event)
        return event.workflow_id

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish a ready-made ``request.submitted.v1`` envelope."""
        if not isinstance(event.payload, RequestSubmitted):
            raise PactmeshClientError(
                f"only request.submitted.v1 travels on {self.topic}, not {event.type}"
            )
        if self._producer is None:
            raise PactmeshClientError("use the publisher inside `async with`")
        await self._producer.send_and_wait(
            self.topic,
            event.model_dump_json().encode(),
            key=event.key,
            headers=message_headers(event),
        )
