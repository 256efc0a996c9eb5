"""Publishing requests on the mesh's inbound topic, as an upstream system does.

The mesh takes a request from the inbound topic only with a bearer token in the record's
``authorization`` header, and acts for the token's tenant and principal, never for what
an envelope claims (one that claims others is dead-lettered): the publisher sends the
token with every request and, unless told otherwise, names the token's own tenant and
principal in the envelope.
"""

from __future__ import annotations

import base64
import inspect
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeAlias

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


Token: TypeAlias = str | Callable[[], str | Awaitable[str]]
"""A bearer JWT, or a function (plain or async) asked for one before every request, so
that a long-running publisher can refresh an expiring token."""


def message_headers(event: Envelope[Any], token: str | None = None) -> list[tuple[str, bytes]]:
    """The Kafka headers the mesh's own publishers set (content type and event type),
    the caller's trace context when there is one, and ``authorization: Bearer <token>``."""
    headers = {"content-type": "application/json", "event-type": event.type}
    headers.update(_trace_context())
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return [(name, value.encode()) for name, value in headers.items()]


def token_identity(token: str) -> tuple[str, Principal]:
    """The tenant and principal a token's claims name, read without verifying it (the
    mesh verifies it): what an envelope sent with it must claim."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        scope = claims.get("scope", claims.get("scp", []))
        principal = Principal(
            subject=str(claims["sub"]),
            roles=tuple(claims.get("roles", [])),
            scopes=tuple(scope.split() if isinstance(scope, str) else scope),
        )
        return str(claims["tenant"]), principal
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise PactmeshClientError(f"not a pactmesh bearer token: {exc!r}") from exc


class RequestPublisher:
    """Submits typed requests on ``<prefix>requests.inbound``.

    An async context manager around an idempotent ``acks=all`` producer; each request is
    a ``request.submitted.v1`` envelope keyed by its workflow id, which is also the id
    its result carries back, sent with the upstream's bearer token::

        async with RequestPublisher("127.0.0.1:9092", token=token) as requests:
            workflow_id = await requests.submit(text="Refund order 4411")
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        token: Token,
        topic_prefix: str = DEFAULT_PREFIX,
        client_id: str = "pactmesh-client",
        security: KafkaSecurity | None = None,
        **producer_options: Any,
    ) -> None:
        """``token`` is the upstream's bearer JWT (``pactmesh token --role upstream-system
        --tenant acme --scope workflow:refund`` locally), or a function returning one;
        ``security`` is how to reach a secured cluster (the standard ``KAFKA_*``
        variables when not given: ``KafkaSecurity.from_env()``); ``producer_options`` go
        to ``aiokafka.AIOKafkaProducer`` as they are."""
        self._token = token
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
        tenant: str | None = None,
        principal: Principal | None = None,
        requested_workflow: str | None = None,
        metadata: Mapping[str, str] | None = None,
        workflow_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Publish one request and return its workflow id, once every in-sync replica has
        it. ``workflow_id`` is the request's id (a new UUIDv7 when not given); pass the
        same one to retry a submission, so that it names the same request. ``tenant`` and
        ``principal`` default to the token's (the mesh refuses any others).

        Raises ``pydantic.ValidationError`` before publishing anything when the request
        breaks its contract (empty text, a malformed tenant or workflow name...).
        """
        payload = RequestSubmitted(
            text=text, requested_workflow=requested_workflow, metadata=dict(metadata or {})
        )
        token = await self._current_token()
        if tenant is None or principal is None:
            own_tenant, own_principal = token_identity(token)
            tenant, principal = tenant or own_tenant, principal or own_principal
        event = new_event(
            payload, workflow_id=workflow_id or uuid7(), tenant=tenant, principal=principal
        )
        await self._send(event, token)
        return event.workflow_id

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish a ready-made ``request.submitted.v1`` envelope (its tenant and
        principal must be the token's)."""
        if not isinstance(event.payload, RequestSubmitted):
            raise PactmeshClientError(
                f"only request.submitted.v1 travels on {self.topic}, not {event.type}"
            )
        await self._send(event, await self._current_token())

    async def _current_token(self) -> str:
        if not callable(self._token):
            return self._token
        token = self._token()
        return await token if inspect.isawaitable(token) else token

    async def _send(self, event: Envelope[Any], token: str) -> None:
        if self._producer is None:
            raise PactmeshClientError("use the publisher inside `async with`")
        await self._producer.send_and_wait(
            self.topic,
            event.model_dump_json().encode(),
            key=event.key,
            headers=message_headers(event, token),
        )
