"""The engine drives workflow graphs from events and publishes what each checkpoint implies."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    AuditRecorded,
    Outcome,
    RequestRouted,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
    WorkflowCompleted,
    WorkflowProgress,
    WorkflowToken,
)
from pactmesh_kit.auth import load_access_policy
from pactmesh_orchestrator.domain.engine import (
    AnswerRefused,
    Engine,
    UnknownWorkflowRun,
    call_id_for,
)
from pactmesh_orchestrator.domain.workflows import build_graphs
from pactmesh_orchestrator.testing import CollectingPublisher, MemoryOutbox
from pactmesh_workflows.gates import GatePolicy


@pytest.fixture
def publisher() -> CollectingPublisher:
    return CollectingPublisher()


@pytest.fixture
def engine(publisher: CollectingPublisher) -> Engine:
    saver = InMemorySaver()
    return Engine(
        graphs=build_graphs(checkpointer=saver, gates=GatePolicy.load()),
        checkpointer=saver,
        publisher=publisher,
        outbox=MemoryOutbox(),
        reviewers=load_access_policy(),
        tool_timeout_s=12.5,
    )


def _routed(workflow: str = "support-triage", **fields: Any) -> Envelope[RequestRouted]:
    event = new_event(
        RequestRouted(
            workflow=workflow,
            confidence=0.9,
            reason="test",
            text="How do I reset my password?",
            fields=fields,
            metadata={"ticket": "T-1"},
        ),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1"),
    )
    return Envelope[RequestRouted].model_validate(event.model_dump())


KB_HITS: dict[str, Any] = {
    "hits": [{"id": "kb-001", "title": "Reset", "answer": "Open Settings", "score": 0.5}]
}


def _completed(
    routed: Envelope[Any], call: ToolCallRequested, result: dict[str, Any] = KB_HITS
) -> Envelope[Any]:
    return routed.follow(
        ToolCallCompleted(call_id=call.call_id, tool=call.tool, result=result, duration_ms=4)
    )


def _failed(
    routed: Envelope[Any], call: ToolCallRequested, code: ToolErrorCode, message: str
) -> Envelope[Any]:
    return routed.follow(
        ToolCallFailed(
            call_id=call.call_id, tool=call.tool, error_code=code, message=message, retryable=False
        )
    )


async def _started(
    engine: Engine, publisher: CollectingPublisher, routed: Envelope[Any]
) -> ToolCallRequested:
    await engine.start(routed)
    return next(e.payload for e in publisher.take() if isinstance(e.payload, ToolCallRequested))


def _without_tokens(events: list[Envelope[Any]]) -> list[Envelope[Any]]:
    return [e for e in events if not isinstance(e.payload, WorkflowToken)]


def _types(events: list[Envelope[Any]]) -> list[tuple[str, str | None]]:
    return [
        (e.type, e.payload.status.value if isinstance(e.payload, WorkflowProgress) else None)
        for e in events
    ]


async def test_start_publishes_running_then_the_tool_call(
    engine: Engine, publisher: CollectingPublisher
) -> None:
    routed = _routed()

    await engine.start(routed)

    events = publisher.take()
    assert _types(events) == [
        ("workflow.progress.v1", "running"),
        ("tool.call.requested.v1", None),
        ("workflow.progress.v1", "waiting_for_tool"),
    ]
    call = events[1].payload
    assert isinstance(call, ToolCallRequested)
    state = await engine.state(routed.workflow_id)
    assert state is not None
    key = state.values["pause_key"]
    assert call.call_id == call_id_for(routed.workflow_id, "search_kb", key)
    assert call.call_id != call_id_for(routed.workflow_id, "search_kb")  # not guessable
    assert call.idempotency_key == f"{routed.workflow_id}:search_kb"
    assert call.tool == "kb.search"
    assert call.arguments == {"query": "How do I reset my password?", "limit": 3}
    assert call.timeout_s == 12.5
    assert call.workflow == "support-triage"  # what the tools service checks access for
    assert all(e.workflow_id == routed.workflow_id for e in events)
    assert all(e.causation_id == routed.event_id for e in events)
    assert all(e.tenant == "acme" for e in events)
    assert all(e.principal == routed.principal for e in events)


async def test_start_again_publishes_nothing(
    engine: Engine, publisher: CollectingPublisher
) -> None:
    routed = _routed()
    await engine.start(routed)
    publisher.take()

    await engine.start(routed)

    assert publisher.events == []


async def test_tool_result_completes_the_workflow(
    engine: Engine, publisher: CollectingPublisher
) -> None:
    routed = _routed()
    call = await _started(engine, publisher, routed)
    result = _completed(routed, call)

    await engine.resume(result)

    published = publisher.take()
    tokens = [e.payload for e in published if isinstance(e.payload, WorkflowToken)]
    events = published[len(tokens) :]
    assert [e.payload for e in published[: len(tokens)]] == tokens, "tokens come first"
    assert _types(events) == [
        ("workflow.completed.v1", None),
        ("workflow.progress.v1", "completed"),
    ]
    done = events[0].payload
    assert isinstance(done, WorkflowCompleted)
    assert done.outcome is Outcome.SUCCEEDED
    assert done.workflow == "support-triage"
    assert done.output["source"] == "knowledge_base"
    assert done.output["article_id"] == "kb-001"
    assert done.output["drafted_by"] == "pactmesh-offline:default"
    assert done.error is None
    assert done.metadata == {"ticket": "T-1"}
    assert done.steps == 1
    assert all(e.causation_id == result.event_id for e in published)


async def test_drafting_streams_tokens_in_order_before_completion(
    engine: Engine, publisher: CollectingPublisher
) -> None:
    routed = _routed()
    call = await _started(engine, publisher, routed)

    await engine.resume(_completed(routed, call))

    published = publisher.take()
    tokens = [e.payload for e in published if isinstance(e.payload, WorkflowToken)]
    assert len(tokens) > 3
    assert [t.seq for t in tokens] == list(range(len(tokens)))
    assert [t.final for t in tokens] == [False] * (len(tokens) - 1) + [True]
    assert {t.step for t in tokens} == {"draft"}
    assert all(e.key == routed.key for e in published)
    done = next(e.payload for e in published if isinstance(e.payload, WorkflowCompleted))
    assert done.output["reply"] == "".join(t.text for t in tokens).strip()
    assert isinstance(published[-1].payload, WorkflowProgress)


async def test_duplicate_tool_result_changes_nothing(
    engine: Engine, publisher: CollectingPublisher
) -> None:
    routed = _routed()
    call = await _started(engine, publisher, routed)
    result = _completed(routed, call)
    await engine.resume(result)
    publisher.take()

    await engine.resume(result)
    await engine.resume(_completed(routed, call))  # same call id, new event id

    assert publisher.events == []
    snapshot = await engine.state(routed.workflow_id)
    assert snapshot is not None
    assert snapshot.values["outcome"] == "succeeded"


async def test_failed_tool_call_fails_the_workflow(
    engine: Engine, publisher: CollectingPublisher
) -> None:
    routed = _routed("refund", order_id="9999")
    call = await _started(engine, publisher, routed)
    assert (call.tool, call.arguments) == ("crm.get_order", {"order_id": "9999"})

    await engine.resume(_failed(routed, call, ToolErrorCode.BACKEND_ERROR, "order 9999 not found"))

    events = publisher.take()
    assert _types(events) == [("workflow.completed.v1", None), ("workflow.progress.v1", "failed")]
    done = events[0].payload
    assert isinstance(done, WorkflowCompleted)
    assert done.outcome is Outcome.FAILED
    assert done.error == "lookup_order: backend_error order 9999 not found"
    assert done.output == {}
    assert events[1].payload.detail == done.error


async def test_result_for_a_call_the_run_never_asked_is_refused_and_audited(
    engine: Engine, publisher: CollectingPublisher
) -> None:
    routed = _routed()
    call = await _started(engine, publisher, routed)
    stray = call.model_copy(update={"call_id": uuid.uuid4()})

    with pytest.raises(AnswerRefused, match="never asked"):
        await engine.resume(_completed(routed, stray))

    assert publisher.events == []
    [audit] = [a for a in publisher.audits if isinstance(a.payload, AuditRecorded)]
    assert (audit.payload.service, audit.payload.action) == ("orchestrator", "resume.refused")
    assert audit.payload.detail["answering"] == str(stray.call_id)
    snapshot = await engine.state(routed.workflow_id)
    assert snapshot is not None
    # still waiting for search_kb's call
    assert [i.value["call_id"] for i in snapshot.interrupts] == [str(call.call_id)]


async def test_result_for_an_unknown_run_raises(engine: Engine) -> None:
    stranger = _routed()
    call = ToolCallRequested(
        call_id=uuid.uuid4(), tool="kb.search", arguments={}, idempotency_key="x:y"
    )
    with pytest.raises(UnknownWorkflowRun, match=str(stranger.workflow_id)):
        await engine.resume(_completed(stranger, call))
    assert await engine.state(stranger.workflow_id) is None


async def test_unregistered_workflow_fails_at_once(
    engine: Engine, publisher: CollectingPublisher
) -> None:
    routed = _routed("teleportation")

    await engine.start(routed)

    events = publisher.take()
    assert _types(events) == [("workflow.completed.v1", None), ("workflow.progress.v1", "failed")]
    done = events[0].payload
    assert isinstance(done, WorkflowCompleted)
    assert (done.workflow, done.outcome) == ("teleportation", Outcome.FAILED)
    assert done.error == "workflow 'teleportation' is not registered"
    assert done.metadata == {"ticket": "T-1"}
    assert await engine.state(routed.workflow_id) is None


@pytest.mark.parametrize(
    ("workflow", "fields", "tool", "arguments"),
    [
        (
            "procurement",
            {"amount": 30000.0},
            "procurement.check_policy",
            {
                "vendor": "unspecified vendor",
                "amount": 30000.0,
                "currency": "USD",
                "items": [
                    {
                        "description": "items as described in the request",
                        "quantity": 1,
                        "unit_price": 30000.0,
                    }
                ],
                "text": "How do I reset my password?",
            },
        ),
        (
            "supply-chain-reroute",
            {"shipment_id": "SH-77"},
            "carriers.quote",
            {"carrier": "northwind", "shipment_id": "SH-77"},
        ),
        ("refund", {"order_id": "4411"}, "crm.get_order", {"order_id": "4411"}),
    ],
)
async def test_each_workflow_asks_for_its_tool(
    engine: Engine,
    publisher: CollectingPublisher,
    workflow: str,
    fields: dict[str, Any],
    tool: str,
    arguments: dict[str, Any],
) -> None:
    call = await _started(engine, publisher, _routed(workflow, **fields))
    assert (call.tool, call.arguments) == (tool, arguments)


async def test_reroute_books_the_cheapest_quote(
    engine: Engine, publisher: CollectingPublisher
) -> None:
    routed = _routed("supply-chain-reroute", shipment_id="SH-77", baseline_cost=900.0)
    call = await _started(engine, publisher, routed)
    quotes = {
        "northwind": {"carrier": "northwind", "quote_id": "q-n", "cost": 900.0, "days": 3},
        "oceanic": {"carrier": "oceanic", "quote_id": "q-o", "cost": 850.0, "days": 6},
    }

    for carrier in ("northwind", "oceanic"):
        assert call.arguments == {"carrier": carrier, "shipment_id": "SH-77"}
        await engine.resume(_completed(routed, call, quotes[carrier]))
        call = next(e.payload for e in publisher.take() if isinstance(e.payload, ToolCallRequested))

    assert (call.tool, call.arguments) == (
        "carriers.book",
        {"carrier": "oceanic", "shipment_id": "SH-77", "quote_id": "q-o", "cost": 850.0},
    )


def test_call_ids_are_stable_per_run_and_step() -> None:
    run = uuid.uuid4()
    assert call_id_for(run, "search_kb") == call_id_for(run, "search_kb")
    assert call_id_for(run, "search_kb") != call_id_for(run, "lookup_order")
    assert call_id_for(run, "search_kb") != call_id_for(uuid.uuid4(), "search_kb")


async def test_another_instance_resumes_from_the_checkpoint(publisher: CollectingPublisher) -> None:
    saver, outbox = InMemorySaver(), MemoryOutbox()

    def instance() -> Engine:
        graphs = build_graphs(checkpointer=saver, gates=GatePolicy.load())
        return Engine(
            graphs=graphs,
            checkpointer=saver,
            publisher=publisher,
            outbox=outbox,
            reviewers=load_access_policy(),
            tool_timeout_s=30,
        )

    routed = _routed()
    call = await _started(instance(), publisher, routed)

    await instance().resume(_completed(routed, call))

    assert _types(_without_tokens(publisher.take())) == [
        ("workflow.completed.v1", None),
        ("workflow.progress.v1", "completed"),
    ]


async def test_a_drafts_tokens_are_gathered_over_the_window(publisher: CollectingPublisher) -> None:
    saver = InMemorySaver()
    engine = Engine(
        graphs=build_graphs(checkpointer=saver, gates=GatePolicy.load()),
        checkpointer=saver,
        publisher=publisher,
        outbox=MemoryOutbox(),
        reviewers=load_access_policy(),
        tool_timeout_s=12.5,
        token_window_s=10.0,
    )
    routed = _routed()
    call = await _started(engine, publisher, routed)

    await engine.resume(_completed(routed, call))

    published = publisher.take()
    tokens = [e.payload for e in published if isinstance(e.payload, WorkflowToken)]
    # the offline model streams every piece at once: the first leaves alone, the rest together
    assert [(t.seq, t.final) for t in tokens] == [(0, False), (1, True)]
    done = next(e.payload for e in published if isinstance(e.payload, WorkflowCompleted))
    assert done.output["reply"] == "".join(t.text for t in tokens).strip()
