"""The request publisher's envelope and headers, without a broker (the real-broker test
is tests-integration/test_client.py)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from pactmesh_client import PactmeshClientError, Principal, RequestPublisher
from pactmesh_client.publisher import message_headers, token_identity
from pactmesh_contracts.envelope import new_event
from pactmesh_contracts.events import Outcome, RequestSubmitted, WorkflowResult
from pydantic import ValidationError

PRINCIPAL = Principal(subject="system:crm", roles=("upstream-system",))


def _jwt(**claims: Any) -> str:
    """An unsigned token shaped like the mesh's (the client never verifies one)."""
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJFUzI1NiJ9.{body}.c2ln"


TOKEN = _jwt(sub="system:crm", tenant="acme", roles=["upstream-system"], scope="workflow:refund")


class FakeProducer:
    """Keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, value: bytes, **kwargs: Any) -> None:
        self.sent.append({"topic": topic, "value": json.loads(value), **kwargs})


async def test_the_topic_follows_the_prefix() -> None:
    assert RequestPublisher("127.0.0.1:1", token=TOKEN).topic == "pactmesh.requests.inbound"
    publisher = RequestPublisher("127.0.0.1:1", token=TOKEN, topic_prefix="t1.")
    assert publisher.topic == "t1.requests.inbound"


async def test_a_request_that_breaks_its_contract_is_refused_before_publishing() -> None:
    publisher = RequestPublisher("127.0.0.1:1", token=TOKEN)  # never started: nothing sent
    with pytest.raises(ValidationError, match="text"):
        await publisher.submit(text="", tenant="acme", principal=PRINCIPAL)
    with pytest.raises(ValidationError, match="requested_workflow"):
        await publisher.submit(
            text="hi", tenant="acme", principal=PRINCIPAL, requested_workflow="Not A Name"
        )
    with pytest.raises(PactmeshClientError, match="inside `async with`"):
        await publisher.submit(text="hi", tenant="acme", principal=PRINCIPAL)


async def test_only_requests_travel_on_the_inbound_topic() -> None:
    result = new_event(
        WorkflowResult(workflow="refund", outcome=Outcome.SUCCEEDED),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=PRINCIPAL,
    )
    with pytest.raises(PactmeshClientError, match=r"not workflow\.result\.v1"):
        await RequestPublisher("127.0.0.1:1", token=TOKEN).publish(result)


def test_headers_name_the_event_type_and_carry_the_trace() -> None:
    event = new_event(
        RequestSubmitted(text="hi"), workflow_id=uuid.uuid4(), tenant="acme", principal=PRINCIPAL
    )
    assert dict(message_headers(event)) == {
        "content-type": b"application/json",
        "event-type": b"request.submitted.v1",
    }

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("upstream") as span:
        headers = dict(message_headers(event))
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert headers["traceparent"].decode().split("-")[1] == trace_id


def test_the_token_travels_in_the_authorization_header() -> None:
    event = new_event(
        RequestSubmitted(text="hi"), workflow_id=uuid.uuid4(), tenant="acme", principal=PRINCIPAL
    )
    assert dict(message_headers(event, TOKEN))["authorization"] == f"Bearer {TOKEN}".encode()


async def test_a_request_claims_the_tokens_own_tenant_and_principal() -> None:
    publisher = RequestPublisher("127.0.0.1:1", token=TOKEN)
    publisher._producer = FakeProducer()  # type: ignore[assignment]

    workflow_id = await publisher.submit(text="Refund order 4411", requested_workflow="refund")

    [sent] = publisher._producer.sent  # type: ignore[attr-defined]
    assert sent["key"] == str(workflow_id).encode()
    assert sent["value"]["tenant"] == "acme"
    assert sent["value"]["principal"] == {
        "subject": "system:crm",
        "roles": ["upstream-system"],
        "scopes": ["workflow:refund"],
    }
    assert dict(sent["headers"])["authorization"] == f"Bearer {TOKEN}".encode()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_token_provider_is_asked_before_every_request(kind: str) -> None:
    tokens = iter([_jwt(sub=f"system:crm-{n}", tenant="acme") for n in range(2)])

    def plain() -> str:
        return next(tokens)

    async def awaited() -> str:
        return next(tokens)

    publisher = RequestPublisher("127.0.0.1:1", token=plain if kind == "sync" else awaited)
    publisher._producer = FakeProducer()  # type: ignore[assignment]
    await publisher.submit(text="one")
    await publisher.submit(text="two")

    sent = publisher._producer.sent  # type: ignore[attr-defined]
    assert [s["value"]["principal"]["subject"] for s in sent] == ["system:crm-0", "system:crm-1"]
    assert sent[0]["headers"] != sent[1]["headers"]


def test_what_is_not_a_token_is_refused() -> None:
    assert token_identity(TOKEN)[0] == "acme"
    with pytest.raises(PactmeshClientError, match="not a pactmesh bearer token"):
        token_identity("opaque-token")
    with pytest.raises(PactmeshClientError, match="not a pactmesh bearer token"):
        token_identity(_jwt(sub="x"))  # no tenant
