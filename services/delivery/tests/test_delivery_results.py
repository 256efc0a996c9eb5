"""Turning a finished workflow into its result event."""

from __future__ import annotations

import uuid
from typing import Any

from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import Outcome, WorkflowCompleted, WorkflowResult
from pactmesh_contracts.topics import result_topic
from pactmesh_delivery.domain.results import result_event_id, result_for


def _completed(**fields: Any) -> Envelope[WorkflowCompleted]:
    payload = WorkflowCompleted(
        workflow="refund",
        outcome=Outcome.SUCCEEDED,
        output={"order": {"status": "shipped"}},
        steps=2,
        metadata={"ticket": "T-7"},
        **fields,
    )
    event = new_event(
        payload,
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1", roles=("requester",)),
    )
    return Envelope[WorkflowCompleted].model_validate(event.model_dump())


def test_result_event_id_is_deterministic_per_workflow() -> None:
    workflow_id = uuid.uuid4()
    assert result_event_id(workflow_id) == result_event_id(uuid.UUID(str(workflow_id)))
    assert result_event_id(workflow_id) != result_event_id(uuid.uuid4())
    assert result_event_id(workflow_id) != workflow_id


def test_result_carries_the_outcome_output_and_metadata() -> None:
    done = _completed()

    result = result_for(done)

    assert result.payload == WorkflowResult(
        workflow="refund",
        outcome=Outcome.SUCCEEDED,
        output={"order": {"status": "shipped"}},
        metadata={"ticket": "T-7"},
    )
    assert result.event_id == result_event_id(done.workflow_id)
    assert result.causation_id == done.event_id
    assert (result.workflow_id, result.tenant, result.principal) == (
        done.workflow_id,
        done.tenant,
        done.principal,
    )
    assert result_topic("refund").accepts(type(result.payload))


def test_failed_workflow_result_keeps_its_error() -> None:
    result = result_for(
        _completed().model_copy(
            update={
                "payload": WorkflowCompleted(
                    workflow="refund", outcome=Outcome.FAILED, error="tool failed"
                ),
            }
        )
    )
    assert (result.payload.outcome, result.payload.error) == (Outcome.FAILED, "tool failed")


def test_a_redelivered_completion_yields_the_same_result_event_id() -> None:
    done = _completed()
    redelivered = done.model_copy(update={"event_id": uuid.uuid4()})
    assert result_for(done).event_id == result_for(redelivered).event_id
