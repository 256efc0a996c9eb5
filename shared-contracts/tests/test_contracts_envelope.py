"""The envelope refuses anything its contract does not describe."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    Channel,
    RequestAccepted,
    RequestRouted,
    ReviewRequested,
)
from pactmesh_contracts.topics import REQUESTS_ACCEPTED
from pydantic import TypeAdapter, ValidationError

ADAPTER: TypeAdapter[Any] = REQUESTS_ACCEPTED.adapter


@pytest.fixture
def wire() -> dict[str, Any]:
    """A valid ``requests.accepted`` record as JSON-compatible data."""
    event = new_event(
        RequestAccepted(text="refund order 4411", channel=Channel.HTTP),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1", roles=("requester",)),
    )
    data: dict[str, Any] = json.loads(event.model_dump_json())
    return data


def _errors(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        ADAPTER.validate_json(json.dumps(data))
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


def test_valid_record_decodes_into_the_typed_payload(wire: dict[str, Any]) -> None:
    event = ADAPTER.validate_json(json.dumps(wire))
    assert isinstance(event.payload, RequestAccepted)
    assert event.payload.channel is Channel.HTTP
    assert event.version == 1
    assert event.key == str(event.workflow_id).encode()


def test_unknown_envelope_field_is_refused(wire: dict[str, Any]) -> None:
    wire["trace_id"] = "abc"
    assert _errors(wire) == [(("trace_id",), "extra_forbidden")]


def test_unknown_payload_field_is_refused(wire: dict[str, Any]) -> None:
    wire["payload"]["priority"] = "high"
    assert _errors(wire) == [(("payload", "priority"), "extra_forbidden")]


def test_unknown_principal_field_is_refused(wire: dict[str, Any]) -> None:
    wire["principal"]["is_admin"] = True
    assert _errors(wire) == [(("principal", "is_admin"), "extra_forbidden")]


@pytest.mark.parametrize(
    ("path", "value", "error_type"),
    [
        (("workflow_id",), "not-a-uuid", "uuid_parsing"),
        (("tenant",), 42, "string_type"),
        (("tenant",), "Acme Corp", "string_pattern_mismatch"),
        (("payload", "text"), 42, "string_type"),
        (("payload", "text"), "", "string_too_short"),
        (("payload", "channel"), "fax", "enum"),
        (("payload", "metadata"), ["a", "b"], "dict_type"),
        (("principal", "roles"), "requester", "tuple_type"),
    ],
)
def test_wrong_types_are_refused(
    wire: dict[str, Any], path: tuple[str, ...], value: object, error_type: str
) -> None:
    target = wire
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    assert _errors(wire) == [(path, error_type)]


def test_envelope_type_must_equal_payload_type(wire: dict[str, Any]) -> None:
    wire["type"] = "request.submitted.v1"
    with pytest.raises(ValidationError, match=r"envelope type 'request\.submitted\.v1' != payload"):
        ADAPTER.validate_json(json.dumps(wire))


def test_payload_of_another_type_is_refused(wire: dict[str, Any]) -> None:
    wire["type"] = wire["payload"]["type"] = "request.submitted.v1"
    assert (("payload", "type"), "literal_error") in _errors(wire)


def test_naive_occurred_at_is_refused(wire: dict[str, Any]) -> None:
    wire["occurred_at"] = "2025-06-01T12:00:00"
    assert _errors(wire) == [(("occurred_at",), "timezone_aware")]


def test_naive_time_inside_a_payload_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        ReviewRequested.model_validate_json(
            json.dumps(
                {
                    "review_id": str(uuid.uuid4()),
                    "workflow": "procurement",
                    "rule": "procurement.amount_over_threshold",
                    "summary": "PO over the limit",
                    "action_type": "purchase_order.v1",
                    "proposed_action": {},
                    "required_role": "approver",
                    "expires_at": "2025-06-01T12:00:00",
                }
            )
        )
    assert [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()] == [
        (("expires_at",), "timezone_aware")
    ]


def test_envelopes_are_immutable(wire: dict[str, Any]) -> None:
    event = ADAPTER.validate_json(json.dumps(wire))
    with pytest.raises(ValidationError, match="frozen"):
        event.tenant = "other"


def test_follow_keeps_workflow_tenant_and_principal() -> None:
    principal = Principal(subject="svc-upstream", roles=("requester",), scopes=("workflow:refund",))
    first = new_event(
        RequestAccepted(text="where is my order?", channel=Channel.KAFKA),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=principal,
    )
    routed = RequestRouted(
        workflow="support-triage", confidence=0.5, reason="matched", text="where is my order?"
    )

    follower = first.follow(routed)

    assert follower.workflow_id == first.workflow_id
    assert follower.tenant == "acme"
    assert follower.principal == principal
    assert follower.causation_id == first.event_id
    assert follower.event_id != first.event_id
    assert follower.type == "request.routed.v1"
    assert follower.payload == routed
    assert first.causation_id is None


def test_follow_applies_explicit_changes() -> None:
    first = new_event(
        RequestAccepted(text="hello", channel=Channel.HTTP),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="u"),
    )
    fixed_id = uuid.uuid4()
    follower = first.follow(RequestAccepted(text="again", channel=Channel.HTTP), event_id=fixed_id)
    assert follower.event_id == fixed_id
    assert follower.causation_id == first.event_id


def test_follow_still_validates_the_new_envelope() -> None:
    first = new_event(
        RequestAccepted(text="hello", channel=Channel.HTTP),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="u"),
    )
    with pytest.raises(ValidationError, match="tenant"):
        first.follow(RequestAccepted(text="x", channel=Channel.HTTP), tenant="NOT A SLUG")


def test_envelope_generic_alias_is_shared_with_the_registry() -> None:
    """Handlers annotated ``Envelope[RequestAccepted]`` must get the registry's class."""
    assert Envelope[RequestAccepted] is REQUESTS_ACCEPTED.record_type
