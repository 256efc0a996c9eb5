"""The request publisher's envelope and headers, without a broker (the real-broker test
is tests-integration/test_client.py)."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from pactmesh_client import PactmeshClientError, Principal, RequestPublisher
from pactmesh_client.publisher import message_headers
from pactmesh_contracts.envelope import new_event
from pactmesh_contracts.events import Outcome, RequestSubmitted, WorkflowResult
from pydantic import ValidationError

PRINCIPAL = Principal(subject="system:crm", roles=("upstream-system",))


async def test_the_topic_follows_the_prefix() -> None:
    assert RequestPublisher("127.0.0.1:1").topic == "pactmesh.requests.inbound"
    assert RequestPublisher("127.0.0.1:1", topic_prefix="t1.").topic == "t1.requests.inbound"


async def test_a_request_that_breaks_its_contract_is_refused_before_publishing() -> None:
    publisher = RequestPublisher("127.0.0.1:1")  # never started: nothing may be sent
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
        await RequestPublisher("127.0.0.1:1").publish(result)


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
