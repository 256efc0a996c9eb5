"""The four workflows, end to end through the real engine, with scripted tools and reviewers.

The rest of the mesh is played by two helpers: ``Mesh.run_tools`` answers every tool call
the engine published according to a per-tool script, and ``Mesh.decide`` answers a review
the way the hitl service would. Every event crosses the wire format of its topic both ways.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    AuditRecorded,
    Outcome,
    RequestRouted,
    RequestStatus,
    ReviewDecided,
    ReviewDecision,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallRequested,
    ToolErrorCode,
    WorkflowCompleted,
    WorkflowProgress,
    WorkflowToken,
)
from pactmesh_contracts.topics import REQUESTS_ROUTED, REVIEWS_DECIDED, TOOL_RESULTS
from pactmesh_kit.auth import AccessPolicy, load_access_policy
from pactmesh_kit.auth.policy import Grant
from pactmesh_kit.genai import GenAiTelemetry
from pactmesh_kit.testing_telemetry import Measurements, Spans
from pactmesh_orchestrator.domain.engine import (
    AnswerRefused,
    Engine,
    UnknownWorkflowRun,
    call_id_for,
    review_id_for,
)
from pactmesh_orchestrator.domain.workflows import build_graphs
from pactmesh_orchestrator.testing import CollectingPublisher, MemoryOutbox
from pactmesh_reasoning.models import (
    OFFLINE_MODEL,
    CallCounters,
    ModelRouter,
    ModelsConfig,
    ModelSpec,
    RoleConfig,
)
from pactmesh_reasoning.models import build_chat_model as build
from pactmesh_reasoning.semantic_cache import SemanticCache
from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.testing import Answer, Failure, ScriptedTools

T = TypeVar("T")

# -- the scripted mesh ----------------------------------------------------------------


Fail = Failure
"""A scripted tool failure."""

QUOTES = {
    "northwind": {"carrier": "northwind", "quote_id": "q-nw-1", "cost": 1100.0, "days": 3},
    "oceanic": {"carrier": "oceanic", "quote_id": "q-oc-1", "cost": 1450.0, "days": 6},
    "rapidfreight": {"carrier": "rapidfreight", "quote_id": "q-rf-1", "cost": 1300.0, "days": 2},
}
KB_ANSWER = "Open Settings, then Security, then Reset password."
DRAFTED = (
    'Thank you for your message about "How do I reset my password". We have received it '
    "and will follow up with the details shortly."
)
"""What the offline drafting model writes for ``TRIAGE_TEXT`` (an acknowledgement)."""
ORDER = {
    "order_id": "4411",
    "total": 500.0,
    "currency": "USD",
    "status": "delivered",
    "items": ["espresso machine"],
    "customer_id": "C-1001",
}

DEFAULTS: dict[str, Answer] = {
    "kb.search": {
        "hits": [{"id": "kb-001", "title": "Reset a password", "answer": KB_ANSWER, "score": 0.9}]
    },
    "procurement.check_policy": {"within_policy": True, "flags": [], "approval_limit": 10000.0},
    "erp.create_purchase_order": lambda a: {
        "po_id": "PO-1042",
        "status": "created",
        "amount": a["amount"],
    },
    "carriers.quote": lambda arguments: QUOTES[arguments["carrier"]],
    "carriers.book": lambda a: {"booking_id": "BK-7", "carrier": a["carrier"], "cost": a["cost"]},
    "crm.get_order": ORDER,
    "payments.refund": lambda a: {"refund_id": "RF-9", "amount": a["amount"]},
}
"""What each tool answers when a test scripts nothing else for it: complete results, as
the tools service sends them (checked against each tool's result contract)."""


@dataclass
class Clock:
    """The engine's clock: now, unless a test moves it on (past a review's deadline)."""

    ahead: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


class Mesh:
    """The engine, and the tools and reviewers around it played by scripts."""

    def __init__(self, engine: Engine, publisher: CollectingPublisher, clock: Clock) -> None:
        self.engine = engine
        self.publisher = publisher
        self.clock = clock
        self.tools = ScriptedTools(DEFAULTS)
        self.script = self.tools.queued
        """Per tool, the answers to give in order before falling back to ``DEFAULTS``."""
        self._answered: set[uuid.UUID] = set()

    async def start(
        self,
        workflow: str,
        text: str,
        *,
        confidence: float = 0.9,
        needs_human: bool = False,
        tenant: str = "acme",
        **fields: Any,
    ) -> uuid.UUID:
        routed = new_event(
            RequestRouted(
                workflow=workflow,
                confidence=confidence,
                reason="test",
                needs_human=needs_human,
                text=text,
                fields=fields,
                metadata={"ticket": "T-1"},
            ),
            workflow_id=uuid.uuid4(),
            tenant=tenant,
            principal=Principal(subject="user-1", roles=("requester",)),
        )
        await self.engine.start(REQUESTS_ROUTED.adapter.validate_json(routed.model_dump_json()))
        return routed.workflow_id

    # what the engine published

    def payloads(self, kind: type[T]) -> list[T]:
        return [e.payload for e in self.publisher.events if isinstance(e.payload, kind)]

    def envelopes(self, kind: type[Any]) -> list[Envelope[Any]]:
        return [e for e in self.publisher.events if isinstance(e.payload, kind)]

    def calls(self, tool: str | None = None) -> list[ToolCallRequested]:
        return [c for c in self.payloads(ToolCallRequested) if tool in (None, c.tool)]

    @property
    def reviews(self) -> list[ReviewRequested]:
        return self.payloads(ReviewRequested)

    @property
    def completed(self) -> WorkflowCompleted:
        [done] = self.payloads(WorkflowCompleted)
        return done

    @property
    def statuses(self) -> list[RequestStatus]:
        return [p.status for p in self.payloads(WorkflowProgress)]

    async def history(self, workflow_id: uuid.UUID) -> list[tuple[str, str]]:
        snapshot = await self.engine.state(workflow_id)
        assert snapshot is not None
        return [(h["step"], h["event"]) for h in snapshot.values["history"]]

    async def pause_key(self, workflow_id: uuid.UUID) -> str:
        """The run's random key, which its call and review ids derive from."""
        snapshot = await self.engine.state(workflow_id)
        assert snapshot is not None
        key: str = snapshot.values["pause_key"]
        return key

    # the tools service

    async def run_tools(self) -> None:
        """Answer every unanswered tool call, and the calls those answers lead to."""
        while pending := [
            e for e in self.envelopes(ToolCallRequested) if e.payload.call_id not in self._answered
        ]:
            request = pending[0]
            self._answered.add(request.payload.call_id)
            result = request.follow(self.tools(request.payload))
            await self.engine.resume(TOOL_RESULTS.adapter.validate_json(result.model_dump_json()))

    # the hitl service

    def review_envelope(self, review_id: uuid.UUID) -> Envelope[Any]:
        [found] = [e for e in self.envelopes(ReviewRequested) if e.payload.review_id == review_id]
        return found

    def decision(
        self,
        review_id: uuid.UUID,
        decision: ReviewDecision,
        *,
        edited_action: dict[str, Any] | None = None,
        reviewer: str = "alice",
        roles: tuple[str, ...] | None = None,
        comment: str = "",
        cause: Envelope[Any] | None = None,
    ) -> Envelope[Any]:
        """A ReviewDecided caused by the review's request (or by ``cause``), off the wire,
        decided by ``reviewer`` holding ``roles`` (by default the role the review needs,
        as hitl checked it; none for an expiry)."""
        asked = [r for r in self.reviews if r.review_id == review_id]
        role = asked[0].required_role if asked else "procurement-manager"
        expiry = decision is ReviewDecision.EXPIRE
        event = (cause or self.review_envelope(review_id)).follow(
            ReviewDecided(
                review_id=review_id,
                decision=decision,
                edited_action=edited_action,
                reviewer=reviewer,
                comment=comment,
                decided_by=None
                if expiry
                else Principal(subject=reviewer, roles=roles if roles is not None else (role,)),
            )
        )
        decoded: Envelope[Any] = REVIEWS_DECIDED.adapter.validate_json(event.model_dump_json())
        return decoded

    async def decide(
        self, review: ReviewRequested, decision: ReviewDecision, **kwargs: Any
    ) -> None:
        """Decide ``review`` as a reviewer would, then run whatever tools follow."""
        await self.engine.decide(self.decision(review.review_id, decision, **kwargs))
        await self.run_tools()

    async def expire(self, review: ReviewRequested, **kwargs: Any) -> None:
        """Expire ``review`` as the hitl service's sweeper does, once its deadline passed."""
        self.clock.ahead = review.expires_at - datetime.now(UTC) + timedelta(seconds=1)
        await self.decide(
            review,
            ReviewDecision.EXPIRE,
            reviewer="policy:expiry",
            comment="deadline passed",
            **kwargs,
        )


def _mesh(
    reasoning: Reasoning | None = None, gates: GatePolicy | None = None, **engine_options: Any
) -> Mesh:
    saver, publisher, clock = InMemorySaver(), CollectingPublisher(wire_check=True), Clock()
    engine = Engine(
        graphs=build_graphs(checkpointer=saver, gates=gates or GatePolicy.load(), models=reasoning),
        checkpointer=saver,
        publisher=publisher,
        outbox=MemoryOutbox(),
        reviewers=load_access_policy(),
        tool_timeout_s=20.0,
        clock=clock,
        **engine_options,
    )
    return Mesh(engine, publisher, clock)


@pytest.fixture
def mesh() -> Mesh:
    return _mesh()


@pytest.fixture
def cache() -> SemanticCache:
    return SemanticCache(DeterministicFakeEmbedding(size=32), threshold=0.99)


@pytest.fixture
def cached_mesh(cache: SemanticCache) -> Mesh:
    return _mesh(Reasoning(cache=cache))


def _purchase_order(quantity: int, unit_price: float = 1000.0) -> dict[str, Any]:
    return {
        "action_type": "purchase_order.v1",
        "vendor": "Acme Supplies",
        "items": [{"description": "laptops", "quantity": quantity, "unit_price": unit_price}],
        "amount": quantity * unit_price,
        "currency": "USD",
    }


PROCUREMENT_TEXT = "Please buy 12 laptops, from Acme Supplies"
"""A purchase request stating no amount (routing's ``amount`` field is then a claim)."""
TRIAGE_TEXT = "How do I reset my password?"
REFUND_TEXT = "Refund order 4411, the screen arrived cracked"


def _buy(amount: float) -> str:
    """A purchase request stating its total, as the gate needs it written."""
    return f"{PROCUREMENT_TEXT}, ${amount:,.0f} in all"


def _refund(amount: float) -> str:
    """A refund request stating its amount."""
    return f"Refund ${amount:g} for order 4411, the screen arrived cracked"


# -- happy paths ----------------------------------------------------------------------


async def test_support_triage_answers_from_a_good_knowledge_base_hit(mesh: Mesh) -> None:
    workflow_id = await mesh.start("support-triage", TRIAGE_TEXT)
    await mesh.run_tools()

    [search] = mesh.calls()
    assert (search.tool, search.arguments) == ("kb.search", {"query": TRIAGE_TEXT, "limit": 3})
    done = mesh.completed
    assert (done.outcome, done.error) == (Outcome.SUCCEEDED, None)
    assert done.output == {
        "answer": KB_ANSWER,
        "source": "knowledge_base",
        "article_id": "kb-001",
        "reply": DRAFTED,
        "drafted_by": "pactmesh-offline:default",
        "similarity": None,
    }
    assert done.metadata == {"ticket": "T-1"}
    assert mesh.reviews == []
    assert await mesh.history(workflow_id) == [
        ("validate_input", "valid_input"),
        ("search_kb", "tool_completed"),
        ("decide", "answered"),
        ("draft", "drafted"),
    ]


class BreaksOff(BaseChatModel):
    """Streams its first three pieces, then its connection drops."""

    @property
    def _llm_type(self) -> str:
        return "breaks-off"

    def _generate(self, messages: Any, stop: Any = None, **kwargs: Any) -> ChatResult:
        raise ConnectionError("connection reset")

    async def _astream(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        for piece in ("You", " can", " reset"):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        raise ConnectionError("connection reset mid-answer")


async def test_a_draft_whose_model_breaks_off_restarts_on_the_next_and_says_so() -> None:
    drafting = RoleConfig(primary=ModelSpec(model="fake:breaks-off"), fallbacks=[ModelSpec()])
    models = ModelRouter(
        ModelsConfig(drafting=drafting),
        factory=lambda spec: BreaksOff() if spec.model == "fake:breaks-off" else build(spec),
        counters=CallCounters(),
    )
    mesh = _mesh(Reasoning(models=models))
    workflow_id = await mesh.start("support-triage", TRIAGE_TEXT)
    await mesh.run_tools()

    done = mesh.completed
    assert (done.output["reply"], done.output["drafted_by"]) == (DRAFTED, OFFLINE_MODEL)
    tokens = mesh.payloads(WorkflowToken)
    [restart] = [i for i, t in enumerate(tokens) if t.restarted_on]
    assert tokens[restart].restarted_on == OFFLINE_MODEL
    assert "".join(t.text for t in tokens[:restart]) == "You can reset"
    assert "".join(t.text for t in tokens[restart:]).strip() == DRAFTED
    assert ("draft", "restarted") in await mesh.history(workflow_id)


async def test_procurement_under_the_threshold_commits_without_review(mesh: Mesh) -> None:
    workflow_id = await mesh.start("procurement", _buy(6000.0), amount=6000.0)
    await mesh.run_tools()

    assert [c.tool for c in mesh.calls()] == [
        "procurement.check_policy",
        "erp.create_purchase_order",
    ]
    [commit] = mesh.calls("erp.create_purchase_order")
    assert commit.arguments == {
        k: v for k, v in _purchase_order(12, 500.0).items() if k != "action_type"
    }
    assert commit.idempotency_key == f"{workflow_id}:commit_order"
    done = mesh.completed
    assert (done.outcome, done.error) == (Outcome.SUCCEEDED, None)
    assert done.output == {
        "po_id": "PO-1042",
        "vendor": "Acme Supplies",
        "amount": 6000.0,
        "flagged_items": [],
        "approval": {"decision": "not_required"},
    }
    assert mesh.reviews == []
    assert await mesh.history(workflow_id) == [
        ("validate_input", "valid_input"),
        ("read_request", "read"),
        ("check_policy", "tool_completed"),
        ("draft_report", "drafted"),
        ("approve_purchase_order", "gate_passed"),
        ("commit_order", "tool_completed"),
    ]


async def test_reroute_with_a_small_cost_increase_books_the_cheapest_quote(mesh: Mesh) -> None:
    workflow_id = await mesh.start("supply-chain-reroute", "SH-77 is stuck", shipment_id="SH-77")
    await mesh.run_tools()

    assert [(c.tool, c.arguments.get("carrier")) for c in mesh.calls()] == [
        ("carriers.quote", "northwind"),
        ("carriers.quote", "oceanic"),
        ("carriers.book", "northwind"),
    ]
    done = mesh.completed
    assert (done.outcome, done.error) == (Outcome.SUCCEEDED, None)
    assert done.output == {
        "booking_id": "BK-7",
        "carrier": "northwind",
        "cost": 1100.0,
        "days": 3,
        "cost_increase": 100.0,
        "quotes": [QUOTES["northwind"], QUOTES["oceanic"]],
        "approval": {"decision": "not_required"},
    }
    assert mesh.reviews == []
    assert ("approve_booking", "gate_passed") in await mesh.history(workflow_id)


async def test_refund_under_the_auto_limit_pays(mesh: Mesh) -> None:
    workflow_id = await mesh.start("refund", _refund(120.0), order_id="4411", amount=120.0)
    await mesh.run_tools()

    assert [c.tool for c in mesh.calls()] == ["crm.get_order", "payments.refund"]
    [pay] = mesh.calls("payments.refund")
    assert pay.arguments == {
        "order_id": "4411",
        "amount": 120.0,
        "currency": "USD",
        "reason": _refund(120.0),
    }
    done = mesh.completed
    assert (done.outcome, done.error) == (Outcome.SUCCEEDED, None)
    assert done.output == {
        "refund_id": "RF-9",
        "order_id": "4411",
        "amount": 120.0,
        "approval": {"decision": "not_required"},
    }
    assert mesh.reviews == []
    assert await mesh.history(workflow_id) == [
        ("validate_input", "valid_input"),
        ("lookup_order", "tool_completed"),
        ("propose_refund", "proposed"),
        ("check_refund_policy", "within_policy"),
        ("approve_refund", "gate_passed"),
        ("execute_refund", "tool_completed"),
    ]


async def test_refund_without_an_amount_refunds_the_order_total(mesh: Mesh) -> None:
    await mesh.start("refund", REFUND_TEXT, order_id="4411")
    mesh.script["crm.get_order"] = [{**ORDER, "total": 150.0}]
    await mesh.run_tools()

    assert mesh.calls("payments.refund")[0].arguments["amount"] == 150.0
    assert mesh.completed.outcome is Outcome.SUCCEEDED


EVERY_WORKFLOW = pytest.mark.parametrize(
    ("workflow", "text", "fields"),
    [
        ("support-triage", TRIAGE_TEXT, {}),
        ("procurement", _buy(6000.0), {"amount": 6000.0}),
        ("supply-chain-reroute", "SH-77 is stuck", {"shipment_id": "SH-77"}),
        ("refund", _refund(120.0), {"order_id": "4411", "amount": 120.0}),
    ],
)
"""A run of each workflow that ends completed once its tools answer."""


@EVERY_WORKFLOW
async def test_every_event_of_a_run_belongs_to_it_and_the_run_ends_completed(
    mesh: Mesh, workflow: str, text: str, fields: dict[str, Any]
) -> None:
    workflow_id = await mesh.start(workflow, text, **fields)
    await mesh.run_tools()

    assert {e.workflow_id for e in mesh.publisher.events} == {workflow_id}
    assert {e.tenant for e in mesh.publisher.events} == {"acme"}
    assert mesh.statuses[0] is RequestStatus.RUNNING
    assert mesh.statuses[-1] is RequestStatus.COMPLETED
    assert mesh.completed.steps == len(mesh.calls())


class RecordingExecutor(ThreadPoolExecutor):
    """The event loop's default executor, noting what is handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted: list[str] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted.append(repr(fn))
        return super().submit(fn, *args, **kwargs)


@EVERY_WORKFLOW
async def test_a_run_never_leaves_the_event_loop_for_a_thread(
    mesh: Mesh, workflow: str, text: str, fields: dict[str, Any]
) -> None:
    """Every step and every branch decision is awaited in place: LangGraph would run a
    plain function given as a branch in a thread pool (``steps.branch`` is why not)."""
    executor = RecordingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    try:
        await mesh.start(workflow, text, **fields)
        await mesh.run_tools()
    finally:
        executor.shutdown()
    assert mesh.statuses[-1] is RequestStatus.COMPLETED
    assert executor.submitted == []


# -- recovery paths -------------------------------------------------------------------


async def test_kb_search_failing_once_is_retried_with_other_parameters(mesh: Mesh) -> None:
    mesh.script["kb.search"] = [Fail(ToolErrorCode.TIMEOUT, "no answer in 5s")]
    workflow_id = await mesh.start("support-triage", TRIAGE_TEXT)
    await mesh.run_tools()

    first, retry = mesh.calls()
    assert first.arguments == {"query": TRIAGE_TEXT, "limit": 3}
    assert retry.arguments == {"query": TRIAGE_TEXT, "limit": 1}
    key = await mesh.pause_key(workflow_id)
    assert retry.call_id == call_id_for(workflow_id, "search_kb_retry", key) != first.call_id
    assert mesh.completed.outcome is Outcome.SUCCEEDED
    assert mesh.completed.output["source"] == "knowledge_base"
    assert await mesh.history(workflow_id) == [
        ("validate_input", "valid_input"),
        ("search_kb", "tool_failed"),
        ("search_kb_retry", "tool_completed"),
        ("decide", "answered"),
        ("draft", "drafted"),
    ]


async def test_kb_search_failing_twice_hands_over_to_a_person(mesh: Mesh) -> None:
    mesh.script["kb.search"] = [Fail(), Fail()]
    await mesh.start("support-triage", TRIAGE_TEXT)
    await mesh.run_tools()

    assert len(mesh.calls()) == 2
    [review] = mesh.reviews
    assert review.proposed_action["reason"] == "knowledge base unavailable"
    assert review.proposed_action["suggested_answer"] is None


async def test_primary_carrier_failing_falls_through_to_the_next_two(mesh: Mesh) -> None:
    mesh.script["carriers.quote"] = [Fail(ToolErrorCode.CIRCUIT_OPEN, "northwind circuit open")]
    workflow_id = await mesh.start("supply-chain-reroute", "SH-77 is stuck", shipment_id="SH-77")
    await mesh.run_tools()

    assert [c.arguments["carrier"] for c in mesh.calls("carriers.quote")] == [
        "northwind",
        "oceanic",
        "rapidfreight",
    ]
    [book] = mesh.calls("carriers.book")
    assert book.arguments == {
        "carrier": "rapidfreight",
        "shipment_id": "SH-77",
        "quote_id": "q-rf-1",
        "cost": 1300.0,
    }
    done = mesh.completed
    assert done.outcome is Outcome.SUCCEEDED
    assert done.output["quotes"] == [QUOTES["rapidfreight"], QUOTES["oceanic"]]
    assert (done.output["carrier"], done.output["cost_increase"]) == ("rapidfreight", 300.0)
    assert await mesh.history(workflow_id) == [
        ("validate_input", "valid_input"),
        ("quote_northwind", "tool_failed"),
        ("quote_oceanic", "tool_completed"),
        ("quote_rapidfreight", "tool_completed"),
        ("choose_route", "chosen"),
        ("approve_booking", "gate_passed"),
        ("book", "tool_completed"),
    ]


async def test_no_carrier_quoting_fails_the_reroute_naming_each_failure(mesh: Mesh) -> None:
    mesh.script["carriers.quote"] = [Fail(message=f"{c} down") for c in QUOTES]
    await mesh.start("supply-chain-reroute", "SH-77 is stuck", shipment_id="SH-77")
    await mesh.run_tools()

    done = mesh.completed
    assert done.outcome is Outcome.FAILED
    assert done.error == (
        "no carrier quoted: quote_northwind: backend_error northwind down;"
        " quote_oceanic: backend_error oceanic down;"
        " quote_rapidfreight: backend_error rapidfreight down"
    )
    assert mesh.calls("carriers.book") == []


@pytest.mark.parametrize(
    "failure",
    [
        Fail(ToolErrorCode.BACKEND_ERROR, "ERP answered 502", retryable=True),
        Fail(ToolErrorCode.TIMEOUT, "ERP did not answer in 20s", retryable=True),
    ],
    ids=["5xx", "timeout"],
)
async def test_erp_commit_retry_reuses_the_idempotency_key_with_a_new_call_id(
    mesh: Mesh, failure: Fail
) -> None:
    mesh.script["erp.create_purchase_order"] = [failure]
    workflow_id = await mesh.start("procurement", _buy(6000.0), amount=6000.0)
    await mesh.run_tools()

    first, retry = mesh.calls("erp.create_purchase_order")
    assert first.idempotency_key == retry.idempotency_key == f"{workflow_id}:commit_order"
    assert first.call_id != retry.call_id
    key = await mesh.pause_key(workflow_id)
    assert (first.call_id, retry.call_id) == (
        call_id_for(workflow_id, "commit_order", key),
        call_id_for(workflow_id, "commit_order_retry", key),
    )
    assert retry.arguments == first.arguments
    assert mesh.completed.outcome is Outcome.SUCCEEDED
    assert mesh.completed.output["po_id"] == "PO-1042"
    history = await mesh.history(workflow_id)
    assert history[-2:] == [
        ("commit_order", "tool_failed"),
        ("commit_order_retry", "tool_completed"),
    ]


async def test_a_non_retryable_failure_goes_straight_to_the_failure_end(mesh: Mesh) -> None:
    mesh.script["erp.create_purchase_order"] = [
        Fail(ToolErrorCode.INVALID_ARGUMENTS, "vendor Acme Supplies is unknown", retryable=False)
    ]
    workflow_id = await mesh.start("procurement", _buy(6000.0), amount=6000.0)
    await mesh.run_tools()

    assert len(mesh.calls("erp.create_purchase_order")) == 1
    done = mesh.completed
    assert (done.outcome, done.output) == (Outcome.FAILED, {})
    assert done.error == "commit_order: invalid_arguments vendor Acme Supplies is unknown"
    assert mesh.statuses[-1] is RequestStatus.FAILED
    history = await mesh.history(workflow_id)
    assert history[-2:] == [("commit_order", "tool_failed"), ("failed", "failed")]


async def test_a_failed_retry_fails_the_workflow_with_the_retrys_error(mesh: Mesh) -> None:
    mesh.script["payments.refund"] = [Fail(message="PSP 503"), Fail(message="PSP 504")]
    workflow_id = await mesh.start("refund", _refund(120.0), order_id="4411", amount=120.0)
    await mesh.run_tools()

    assert len(mesh.calls("payments.refund")) == 2
    assert mesh.completed.outcome is Outcome.FAILED
    assert mesh.completed.error == "execute_refund: backend_error PSP 504"
    history = await mesh.history(workflow_id)
    assert history[-3:] == [
        ("execute_refund", "tool_failed"),
        ("execute_refund_retry", "tool_failed"),
        ("failed", "failed"),
    ]


# -- procurement approval gate --------------------------------------------------------


async def _over_threshold(mesh: Mesh) -> tuple[uuid.UUID, ReviewRequested]:
    workflow_id = await mesh.start("procurement", _buy(12000.0), amount=12000.0)
    await mesh.run_tools()
    [review] = mesh.reviews
    return workflow_id, review


async def test_procurement_above_the_threshold_waits_for_a_procurement_manager(
    mesh: Mesh,
) -> None:
    workflow_id, review = await _over_threshold(mesh)

    assert review.rule == "procurement.amount_over_threshold"
    assert review.required_role == "procurement-manager"
    assert review.action_type == "purchase_order.v1"
    assert review.attempt == 0
    key = await mesh.pause_key(workflow_id)
    assert review.review_id == review_id_for(workflow_id, "approve_purchase_order", 0, key)
    # random per run: not what the run's id alone would give
    assert review.review_id != review_id_for(workflow_id, "approve_purchase_order", 0)
    assert review.proposed_action == _purchase_order(12)
    assert mesh.statuses[-1] is RequestStatus.WAITING_FOR_REVIEW
    assert mesh.calls("erp.create_purchase_order") == []
    assert mesh.payloads(WorkflowCompleted) == []


async def test_approved_purchase_order_is_committed(mesh: Mesh) -> None:
    workflow_id, review = await _over_threshold(mesh)

    await mesh.decide(review, ReviewDecision.APPROVE, reviewer="maria", comment="budgeted")

    [commit] = mesh.calls("erp.create_purchase_order")
    assert commit.arguments["amount"] == 12000.0
    done = mesh.completed
    assert done.outcome is Outcome.SUCCEEDED
    assert done.output["approval"] == {
        "decision": "approve",
        "rule": "procurement.amount_over_threshold",
        "reviewer": "maria",
        "comment": "budgeted",
    }
    assert (await mesh.history(workflow_id))[-3:] == [
        ("approve_purchase_order", "review_requested"),
        ("approve_purchase_order", "approved"),
        ("commit_order", "tool_completed"),
    ]


async def test_rejected_purchase_order_is_never_sent_to_the_erp(mesh: Mesh) -> None:
    workflow_id, review = await _over_threshold(mesh)

    await mesh.decide(review, ReviewDecision.REJECT, reviewer="maria", comment="over budget")

    done = mesh.completed
    assert (done.outcome, done.output) == (Outcome.REJECTED, {})
    assert done.error == "rejected by maria: over budget"
    assert mesh.calls("erp.create_purchase_order") == []
    assert mesh.statuses[-1] is RequestStatus.FAILED
    assert (await mesh.history(workflow_id))[-1][1] == "rejected"


async def test_edited_purchase_order_is_committed_with_the_edited_values(mesh: Mesh) -> None:
    workflow_id, review = await _over_threshold(mesh)
    edited = _purchase_order(8)

    await mesh.decide(review, ReviewDecision.EDIT, edited_action=edited, reviewer="maria")

    [commit] = mesh.calls("erp.create_purchase_order")
    assert commit.arguments == {k: v for k, v in edited.items() if k != "action_type"}
    done = mesh.completed
    assert done.outcome is Outcome.SUCCEEDED
    assert done.output["amount"] == 8000.0
    assert done.output["approval"] == {
        "decision": "edit",
        "rule": "procurement.amount_over_threshold",
        "reviewer": "maria",
        "comment": "",
    }
    snapshot = await mesh.engine.state(workflow_id)
    assert snapshot is not None
    [edit] = [h for h in snapshot.values["history"] if h["event"] == "edited"]
    assert (edit["before"], edit["after"]) == (_purchase_order(12), edited)


async def test_an_edit_without_its_tag_is_accepted_and_tagged(mesh: Mesh) -> None:
    _, review = await _over_threshold(mesh)
    edited = {k: v for k, v in _purchase_order(8).items() if k != "action_type"}

    await mesh.decide(review, ReviewDecision.EDIT, edited_action=edited)

    assert mesh.completed.outcome is Outcome.SUCCEEDED
    assert mesh.calls("erp.create_purchase_order")[0].arguments["amount"] == 8000.0


@pytest.mark.parametrize(
    "edited",
    [
        {**_purchase_order(8), "amount": 12000.0},  # amount is not the total of the lines
        {**_purchase_order(8), "approved": True},  # a field the contract does not know
        {**_purchase_order(8), "items": []},
    ],
    ids=["wrong-total", "unknown-field", "no-lines"],
)
async def test_an_invalid_edit_rejects_without_executing(
    mesh: Mesh, edited: dict[str, Any]
) -> None:
    workflow_id, review = await _over_threshold(mesh)

    await mesh.decide(review, ReviewDecision.EDIT, edited_action=edited)

    done = mesh.completed
    assert done.outcome is Outcome.REJECTED
    assert done.error is not None
    assert done.error.startswith("edited action is invalid: ")
    assert mesh.calls("erp.create_purchase_order") == []
    assert (await mesh.history(workflow_id))[-1] == ("approve_purchase_order", "rejected")


async def test_expired_review_is_escalated_to_the_finance_director(mesh: Mesh) -> None:
    workflow_id, review = await _over_threshold(mesh)

    await mesh.expire(review)

    assert len(mesh.reviews) == 2
    first, escalated = mesh.reviews
    assert escalated.attempt == 1
    assert escalated.required_role == "finance-director"
    key = await mesh.pause_key(workflow_id)
    assert escalated.review_id == review_id_for(workflow_id, "approve_purchase_order", 1, key)
    assert escalated.review_id != first.review_id
    assert escalated.summary.startswith("ESCALATED: ")
    assert escalated.proposed_action == first.proposed_action
    assert mesh.statuses[-1] is RequestStatus.WAITING_FOR_REVIEW


async def test_expired_review_waits_for_the_escalated_review(mesh: Mesh) -> None:
    """What the run itself does on expiry (the published events are tested above)."""
    workflow_id, review = await _over_threshold(mesh)

    await mesh.expire(review)

    snapshot = await mesh.engine.state(workflow_id)
    assert snapshot is not None
    [waiting] = [i.value for i in snapshot.interrupts]
    assert (waiting["attempt"], waiting["required_role"]) == (1, "finance-director")
    assert waiting["summary"] == "ESCALATED: Purchase order above the approval threshold"
    assert mesh.payloads(WorkflowCompleted) == []
    assert mesh.calls("erp.create_purchase_order") == []


def _escalated(mesh: Mesh) -> ReviewRequested:
    """The escalated review, as the engine published it after the first one expired."""
    [escalated] = [r for r in mesh.reviews if r.attempt == 1]
    return escalated


async def test_escalated_review_expiring_too_rejects(mesh: Mesh) -> None:
    workflow_id, review = await _over_threshold(mesh)
    await mesh.expire(review)

    first_request = mesh.review_envelope(review.review_id)
    await mesh.expire(_escalated(mesh), cause=first_request)

    done = mesh.completed
    assert (done.outcome, done.error) == (Outcome.REJECTED, "review expired: deadline passed")
    assert mesh.calls("erp.create_purchase_order") == []
    assert (await mesh.history(workflow_id))[-3:] == [
        ("approve_purchase_order", "review_requested"),
        ("approve_purchase_order", "review_expired"),
        ("approve_purchase_order", "rejected"),
    ]


async def test_escalated_review_approved_by_the_director_commits(mesh: Mesh) -> None:
    _, review = await _over_threshold(mesh)
    await mesh.expire(review)

    first_request = mesh.review_envelope(review.review_id)
    await mesh.decide(
        _escalated(mesh),
        ReviewDecision.APPROVE,
        reviewer="dora",
        cause=first_request,
    )

    assert mesh.completed.outcome is Outcome.SUCCEEDED
    assert mesh.completed.output["approval"] == {
        "decision": "approve",
        "rule": "procurement.amount_over_threshold",
        "reviewer": "dora",
        "comment": "",
    }
    assert len(mesh.calls("erp.create_purchase_order")) == 1


async def test_flagged_blocked_items_reject_before_any_review(mesh: Mesh) -> None:
    mesh.script["procurement.check_policy"] = [
        {
            "within_policy": False,
            "flags": ["vendor blocked: sanctions list"],
            "approval_limit": 10000.0,
        }
    ]
    await mesh.start("procurement", _buy(12000.0), amount=12000.0)
    await mesh.run_tools()

    done = mesh.completed
    assert (done.outcome, done.error) == (Outcome.REJECTED, "vendor blocked: sanctions list")
    assert done.output == {"flagged_items": ["vendor blocked: sanctions list"]}
    assert mesh.reviews == []
    assert mesh.calls("erp.create_purchase_order") == []


# -- supply-chain approval gate -------------------------------------------------------


async def test_reroute_cost_increase_over_the_threshold_waits_then_expiry_rejects(
    mesh: Mesh,
) -> None:
    workflow_id = await mesh.start(
        "supply-chain-reroute", "SH-77 is stuck", shipment_id="SH-77", baseline_cost=500.0
    )
    await mesh.run_tools()

    [review] = mesh.reviews
    assert review.rule == "supply-chain.cost_increase_over_threshold"
    assert review.required_role == "logistics-manager"
    assert review.action_type == "reroute_booking.v1"
    assert review.proposed_action["cost_increase"] == 600.0
    assert mesh.statuses[-1] is RequestStatus.WAITING_FOR_REVIEW

    await mesh.expire(review)

    assert len(mesh.reviews) == 1  # this gate rejects on expiry instead of escalating
    done = mesh.completed
    assert (done.outcome, done.error) == (Outcome.REJECTED, "review expired: deadline passed")
    assert mesh.calls("carriers.book") == []
    assert (await mesh.history(workflow_id))[-1] == ("approve_booking", "rejected")


async def test_reroute_over_the_threshold_approved_books(mesh: Mesh) -> None:
    await mesh.start(
        "supply-chain-reroute", "SH-77 is stuck", shipment_id="SH-77", baseline_cost=500.0
    )
    await mesh.run_tools()

    await mesh.decide(mesh.reviews[0], ReviewDecision.APPROVE, reviewer="lena")

    assert mesh.calls("carriers.book")[0].arguments["quote_id"] == "q-nw-1"
    assert mesh.completed.outcome is Outcome.SUCCEEDED


# -- refund policy ----------------------------------------------------------------------


async def _out_of_policy(mesh: Mesh, amount: float = 800.0) -> tuple[uuid.UUID, ReviewRequested]:
    workflow_id = await mesh.start("refund", _refund(amount), order_id="4411", amount=amount)
    await mesh.run_tools()
    [review] = mesh.reviews
    return workflow_id, review


async def test_refund_over_the_order_total_goes_to_an_out_of_policy_review(mesh: Mesh) -> None:
    workflow_id, review = await _out_of_policy(mesh)

    assert review.rule == "refund.amount_out_of_policy"
    assert review.required_role == "support-lead"
    assert review.action_type == "refund.v1"
    assert review.proposed_action["amount"] == 800.0
    assert "exceeds the order total 500" in review.summary
    key = await mesh.pause_key(workflow_id)
    assert review.review_id == review_id_for(workflow_id, "check_refund_policy", 0, key)
    # random per run: not what the run's id alone would give
    assert review.review_id != review_id_for(workflow_id, "check_refund_policy", 0)
    assert mesh.calls("payments.refund") == []


async def test_refund_over_the_policy_ceiling_goes_to_review_too(mesh: Mesh) -> None:
    mesh.script["crm.get_order"] = [{**ORDER, "total": 5000.0}]
    _, review = await _out_of_policy(mesh, amount=1500.0)

    assert review.rule == "refund.amount_out_of_policy"
    assert "exceeds the refund limit 1000" in review.summary


async def test_approving_an_out_of_policy_refund_as_is_never_pays(mesh: Mesh) -> None:
    workflow_id, review = await _out_of_policy(mesh)

    await mesh.decide(review, ReviewDecision.APPROVE, reviewer="lee")

    done = mesh.completed
    assert done.outcome is Outcome.REJECTED
    assert done.error == (
        "refund not executed: amount 800 exceeds the order total 500 (approve by lee)"
    )
    assert mesh.calls("payments.refund") == []
    assert (await mesh.history(workflow_id))[-2:] == [
        ("check_refund_policy", "out_of_policy"),
        ("check_refund_policy", "rejected"),
    ]


async def test_an_in_policy_edit_pays_the_edited_amount_without_a_second_review(
    mesh: Mesh,
) -> None:
    workflow_id, review = await _out_of_policy(mesh)
    edited = {**review.proposed_action, "amount": 450.0}

    await mesh.decide(review, ReviewDecision.EDIT, edited_action=edited, reviewer="lee")

    assert len(mesh.reviews) == 1
    [pay] = mesh.calls("payments.refund")
    assert pay.arguments["amount"] == 450.0
    done = mesh.completed
    assert done.outcome is Outcome.SUCCEEDED
    assert done.output["amount"] == 450.0
    assert done.output["approval"] == {
        "decision": "edit",
        "rule": "refund.amount_out_of_policy",
        "reviewer": "lee",
    }
    assert ("approve_refund", "gate_passed") not in await mesh.history(workflow_id)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": 600.0}, "amount 600 exceeds the order total 500"),
        ({"order_id": "9999", "amount": 100.0}, "the edit changed the order"),
    ],
)
async def test_an_edit_still_out_of_policy_is_rejected(
    mesh: Mesh, change: dict[str, Any], reason: str
) -> None:
    _, review = await _out_of_policy(mesh)

    await mesh.decide(
        review, ReviewDecision.EDIT, edited_action={**review.proposed_action, **change}
    )

    assert mesh.completed.outcome is Outcome.REJECTED
    assert mesh.completed.error == f"refund not executed: {reason} (edit by alice)"
    assert mesh.calls("payments.refund") == []


async def test_an_out_of_policy_edit_that_breaks_the_contract_is_rejected(mesh: Mesh) -> None:
    _, review = await _out_of_policy(mesh)

    await mesh.decide(
        review, ReviewDecision.EDIT, edited_action={**review.proposed_action, "amount": -5.0}
    )

    assert mesh.completed.outcome is Outcome.REJECTED
    assert mesh.calls("payments.refund") == []


async def test_refund_above_the_auto_limit_within_policy_waits_for_approval(
    mesh: Mesh,
) -> None:
    workflow_id, review = await _out_of_policy(mesh, amount=300.0)

    assert review.rule == "refund.amount_over_auto_limit"
    assert review.required_role == "support-lead"
    key = await mesh.pause_key(workflow_id)
    assert review.review_id == review_id_for(workflow_id, "approve_refund", 0, key)
    # random per run: not what the run's id alone would give
    assert review.review_id != review_id_for(workflow_id, "approve_refund", 0)
    assert mesh.calls("payments.refund") == []

    await mesh.decide(review, ReviewDecision.APPROVE, reviewer="lee")

    assert mesh.calls("payments.refund")[0].arguments["amount"] == 300.0
    assert mesh.completed.outcome is Outcome.SUCCEEDED
    assert (await mesh.history(workflow_id))[3:6] == [
        ("check_refund_policy", "within_policy"),
        ("approve_refund", "review_requested"),
        ("approve_refund", "approved"),
    ]


# -- support triage handover ------------------------------------------------------------


async def _handover(mesh: Mesh) -> tuple[uuid.UUID, ReviewRequested]:
    workflow_id = await mesh.start("support-triage", TRIAGE_TEXT, confidence=0.1)
    await mesh.run_tools()
    [review] = mesh.reviews
    return workflow_id, review


async def test_low_routing_confidence_hands_over_to_a_person(mesh: Mesh) -> None:
    _, review = await _handover(mesh)

    assert review.rule == "support.human_triage"
    assert review.required_role == "support-agent"
    assert review.action_type == "triage_handover.v1"
    assert review.proposed_action == {
        "action_type": "triage_handover.v1",
        "question": TRIAGE_TEXT,
        "reason": "routing confidence 0.10 below 0.3",
        "suggested_answer": KB_ANSWER,
    }
    assert mesh.payloads(WorkflowCompleted) == []


async def test_routing_asking_for_a_person_hands_over_even_when_confident(mesh: Mesh) -> None:
    await mesh.start("support-triage", TRIAGE_TEXT, confidence=0.49, needs_human=True)
    await mesh.run_tools()

    [review] = mesh.reviews
    assert review.rule == "support.human_triage"
    assert review.proposed_action["reason"] == "routing asked for a person to triage it"
    assert review.proposed_action["suggested_answer"] == KB_ANSWER
    assert mesh.payloads(WorkflowCompleted) == []


async def test_agent_edit_answers_with_the_agents_text(mesh: Mesh) -> None:
    workflow_id, review = await _handover(mesh)
    edited = {**review.proposed_action, "suggested_answer": "I have reset it for you."}

    await mesh.decide(review, ReviewDecision.EDIT, edited_action=edited, reviewer="sam")

    done = mesh.completed
    assert (done.outcome, done.error) == (Outcome.SUCCEEDED, None)
    assert done.output == {
        "answer": "I have reset it for you.",
        "source": "agent",
        "article_id": None,
        "reply": None,
        "drafted_by": None,
        "similarity": None,
    }
    assert (await mesh.history(workflow_id))[-2:] == [
        ("human_triage", "review_requested"),
        ("human_triage", "edited"),
    ]


async def test_agent_approving_the_suggestion_sends_it(mesh: Mesh) -> None:
    _, review = await _handover(mesh)

    await mesh.decide(review, ReviewDecision.APPROVE)

    assert mesh.completed.output == {
        "answer": KB_ANSWER,
        "source": "agent",
        "article_id": None,
        "reply": None,
        "drafted_by": None,
        "similarity": None,
    }


async def test_agent_approving_without_any_answer_rejects(mesh: Mesh) -> None:
    mesh.script["kb.search"] = [{"hits": []}]
    _, review = await _handover(mesh)
    assert review.proposed_action["suggested_answer"] is None

    await mesh.decide(review, ReviewDecision.APPROVE)

    assert mesh.completed.outcome is Outcome.REJECTED
    assert mesh.completed.error == "the agent approved no answer"


# -- invalid input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workflow", "fields", "contract", "field"),
    [
        ("procurement", {"po_number": "PO-1"}, "ProcurementInput", "amount"),
        ("procurement", {"amount": -3.0}, "ProcurementInput", "amount"),
        ("refund", {"amount": 20.0}, "RefundInput", "order_id"),
        ("supply-chain-reroute", {"baseline_cost": 100.0}, "RerouteInput", "shipment_id"),
        ("supply-chain-reroute", {"shipment_id": "77"}, "RerouteInput", "shipment_id"),
    ],
)
async def test_invalid_input_fails_naming_the_contract_and_calls_no_tool(
    mesh: Mesh, workflow: str, fields: dict[str, Any], contract: str, field: str
) -> None:
    workflow_id = await mesh.start(workflow, "do the thing", **fields)
    await mesh.run_tools()

    done = mesh.completed
    assert (done.outcome, done.output) == (Outcome.FAILED, {})
    assert done.error is not None
    assert done.error.startswith(f"input does not satisfy {contract}: {field}: ")
    assert mesh.calls() == []
    assert mesh.statuses == [RequestStatus.RUNNING, RequestStatus.FAILED]
    assert await mesh.history(workflow_id) == [("validate_input", "invalid_input")]


# -- idempotency ----------------------------------------------------------------------


async def test_the_same_decision_delivered_twice_changes_nothing_the_second_time(
    mesh: Mesh,
) -> None:
    workflow_id, review = await _over_threshold(mesh)
    decided = mesh.decision(review.review_id, ReviewDecision.APPROVE)
    await mesh.engine.decide(decided)
    published = len(mesh.publisher.events)
    before = await mesh.engine.state(workflow_id)

    await mesh.engine.decide(decided)

    assert len(mesh.publisher.events) == published
    after = await mesh.engine.state(workflow_id)
    assert before is not None
    assert after is not None
    assert after.config == before.config
    assert len(mesh.calls("erp.create_purchase_order")) == 1


async def test_a_late_duplicate_after_completion_changes_nothing(mesh: Mesh) -> None:
    _, review = await _over_threshold(mesh)
    decided = mesh.decision(review.review_id, ReviewDecision.APPROVE)
    await mesh.engine.decide(decided)
    await mesh.run_tools()
    published = len(mesh.publisher.events)

    await mesh.engine.decide(decided)
    await mesh.engine.decide(mesh.decision(review.review_id, ReviewDecision.REJECT))

    assert len(mesh.publisher.events) == published
    assert mesh.completed.outcome is Outcome.SUCCEEDED


async def test_a_decision_for_an_unknown_review_of_a_known_run_is_refused(mesh: Mesh) -> None:
    workflow_id, review = await _over_threshold(mesh)
    published = len(mesh.publisher.events)
    stray = mesh.decision(
        uuid.uuid4(),
        ReviewDecision.APPROVE,
        reviewer="mallory",
        cause=mesh.review_envelope(review.review_id),
    )

    with pytest.raises(AnswerRefused, match="never asked"):
        await mesh.engine.decide(stray)

    assert mesh.publisher.events[published:] == []
    [audit] = _refusals(mesh)
    assert audit.payload.action == "resume.refused"
    snapshot = await mesh.engine.state(workflow_id)
    assert snapshot is not None
    # still waiting at approve_purchase_order for its review
    assert [i.value["review_id"] for i in snapshot.interrupts] == [str(review.review_id)]
    assert mesh.calls("erp.create_purchase_order") == []


async def test_a_tool_answer_cannot_resume_a_review(mesh: Mesh) -> None:
    """A call id and a review id live in different namespaces, even for the same step;
    and an id derived the old, guessable way names nothing a keyed run asked."""
    workflow_id, review = await _over_threshold(mesh)
    published = len(mesh.publisher.events)
    [request] = mesh.envelopes(ToolCallRequested)
    forged = request.follow(
        ToolCallCompleted(
            call_id=call_id_for(workflow_id, "approve_purchase_order"),
            tool="erp.create_purchase_order",
            result={"approved": True},
            duration_ms=1,
        )
    )

    with pytest.raises(AnswerRefused):
        await mesh.engine.resume(TOOL_RESULTS.adapter.validate_json(forged.model_dump_json()))

    assert mesh.publisher.events[published:] == []
    assert [e.payload.action for e in _refusals(mesh)] == ["resume.refused"]
    assert review.review_id != call_id_for(workflow_id, "approve_purchase_order")
    assert mesh.calls("erp.create_purchase_order") == []


async def test_a_decision_for_an_unknown_workflow_is_refused_and_audited(mesh: Mesh) -> None:
    stranger = new_event(
        ReviewDecided(review_id=uuid.uuid4(), decision=ReviewDecision.APPROVE, reviewer="x"),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1"),
    )

    with pytest.raises(UnknownWorkflowRun, match=str(stranger.workflow_id)):
        await mesh.engine.decide(REVIEWS_DECIDED.adapter.validate_json(stranger.model_dump_json()))
    assert mesh.publisher.events == []
    [audit] = _refusals(mesh)
    assert audit.payload.action == "resume.refused"
    assert audit.payload.detail["reviewer"] == "x"


# -- amounts that decide a gate: stated in the request or from a backend ------------------


async def test_an_amount_only_routing_came_up_with_is_reviewed_however_small(mesh: Mesh) -> None:
    """6,000 is under the threshold, but nothing in the request says 6,000."""
    workflow_id = await mesh.start("procurement", PROCUREMENT_TEXT, amount=6000.0)
    await mesh.run_tools()

    [review] = mesh.reviews
    assert review.rule == "procurement.amount_over_threshold"
    assert mesh.calls("erp.create_purchase_order") == []
    await _waits_for_its_review(mesh, workflow_id, review)


async def test_an_order_whose_lines_are_priced_in_the_request_needs_no_review(mesh: Mesh) -> None:
    text = "Please buy 12 laptops at $500 each, from Acme Supplies"
    await mesh.start("procurement", text, amount=6000.0)
    await mesh.run_tools()

    assert mesh.reviews == []
    [commit] = mesh.calls("erp.create_purchase_order")
    assert commit.arguments["amount"] == 6000.0


async def test_a_refund_amount_neither_stated_nor_the_orders_total_is_reviewed(
    mesh: Mesh,
) -> None:
    await mesh.start("refund", REFUND_TEXT, order_id="4411", amount=150.0)
    await mesh.run_tools()

    [review] = mesh.reviews
    assert review.rule == "refund.amount_over_auto_limit"
    assert mesh.calls("payments.refund") == []


# -- events that would resume a run: each must answer what the run asked ----------------


def _refusals(mesh: Mesh) -> list[Envelope[AuditRecorded]]:
    """The refusals audited (the timeline's audit events aside)."""
    return [a for a in mesh.publisher.audits if isinstance(a.payload, AuditRecorded)]


def _refused(mesh: Mesh, published: int) -> dict[str, Any]:
    """The one refusal audited, with no other event published since ``published``."""
    assert mesh.publisher.events[published:] == []
    [audit] = _refusals(mesh)
    assert (audit.payload.service, audit.payload.action) == ("orchestrator", "resume.refused")
    detail: dict[str, Any] = audit.payload.detail
    return detail


async def _waits_for_its_review(
    mesh: Mesh, workflow_id: uuid.UUID, review: ReviewRequested
) -> None:
    snapshot = await mesh.engine.state(workflow_id)
    assert snapshot is not None
    assert [i.value["review_id"] for i in snapshot.interrupts] == [str(review.review_id)]
    assert mesh.calls("erp.create_purchase_order") == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"tenant": "globex"}, "the event is for tenant 'globex'; the run is 'acme''s"),
        (
            {"principal": Principal(subject="mallory", roles=("requester",))},
            "the event acts for 'mallory'; the run acts for 'user-1'",
        ),
    ],
    ids=["another-tenant", "another-principal"],
)
async def test_a_genuine_decision_in_another_envelope_is_refused(
    mesh: Mesh, change: dict[str, Any], reason: str
) -> None:
    workflow_id, review = await _over_threshold(mesh)
    published = len(mesh.publisher.events)
    decided = mesh.decision(review.review_id, ReviewDecision.APPROVE, reviewer="maria")

    with pytest.raises(AnswerRefused, match=re.escape(reason)):
        await mesh.engine.decide(decided.model_copy(update=change))

    assert _refused(mesh, published)["reason"] == reason
    await _waits_for_its_review(mesh, workflow_id, review)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"roles": ("auditor",)}, "'maria' (roles ['auditor']) may not approve a review"),
        ({"roles": ()}, "may not approve a review that needs a 'procurement-manager'"),
    ],
    ids=["another-role", "no-role"],
)
async def test_a_decision_by_a_reviewer_without_the_gates_role_is_refused(
    mesh: Mesh, kwargs: dict[str, Any], reason: str
) -> None:
    workflow_id, review = await _over_threshold(mesh)
    published = len(mesh.publisher.events)

    with pytest.raises(AnswerRefused, match=re.escape(reason)):
        await mesh.engine.decide(
            mesh.decision(review.review_id, ReviewDecision.APPROVE, reviewer="maria", **kwargs)
        )

    detail = _refused(mesh, published)
    assert (detail["reviewer"], detail["decision"]) == ("maria", "approve")
    await _waits_for_its_review(mesh, workflow_id, review)


async def test_a_decision_naming_no_reviewer_principal_or_another_one_is_refused(
    mesh: Mesh,
) -> None:
    workflow_id, review = await _over_threshold(mesh)
    decided = mesh.decision(review.review_id, ReviewDecision.APPROVE, reviewer="maria")
    anonymous = decided.payload.model_copy(update={"decided_by": None})
    impostor = decided.payload.model_copy(
        update={"decided_by": Principal(subject="pat", roles=("procurement-manager",))}
    )

    with pytest.raises(AnswerRefused, match="names no reviewer principal"):
        await mesh.engine.decide(decided.model_copy(update={"payload": anonymous}))
    with pytest.raises(AnswerRefused, match="reviewer 'maria' is not the principal 'pat'"):
        await mesh.engine.decide(decided.model_copy(update={"payload": impostor}))

    await _waits_for_its_review(mesh, workflow_id, review)


async def test_a_reviewer_whose_role_lacks_the_review_action_is_refused() -> None:
    """The gate's role is not enough: the access policy must grant the action too."""
    mesh = _mesh()
    mesh.engine._reviewers = AccessPolicy(
        roles={"procurement-manager": Grant(review_actions=frozenset({"reject"}))}
    )
    workflow_id, review = await _over_threshold(mesh)

    with pytest.raises(AnswerRefused, match="may not approve"):
        await mesh.engine.decide(mesh.decision(review.review_id, ReviewDecision.APPROVE))
    await _waits_for_its_review(mesh, workflow_id, review)

    await mesh.decide(review, ReviewDecision.REJECT)  # what the policy does grant
    assert mesh.completed.outcome is Outcome.REJECTED


async def test_the_requester_never_decides_a_review_of_their_own_request(mesh: Mesh) -> None:
    """Separation of duties: holding the approver's role is not enough."""
    workflow_id, review = await _over_threshold(mesh)
    assert review.separation_of_duties is True
    published = len(mesh.publisher.events)

    with pytest.raises(AnswerRefused, match="'user-1' may not decide a review of their own"):
        await mesh.engine.decide(
            mesh.decision(review.review_id, ReviewDecision.APPROVE, reviewer="user-1")
        )

    assert _refused(mesh, published)["reviewer"] == "user-1"
    await _waits_for_its_review(mesh, workflow_id, review)


async def test_a_gate_may_let_the_requester_decide() -> None:
    policy = GatePolicy.load()
    rule = "procurement.amount_over_threshold"
    lenient = policy.gates[rule].model_copy(update={"separation_of_duties": False})
    mesh = _mesh(gates=policy.model_copy(update={"gates": {**policy.gates, rule: lenient}}))
    _, review = await _over_threshold(mesh)
    assert review.separation_of_duties is False

    await mesh.decide(review, ReviewDecision.APPROVE, reviewer="user-1")

    assert mesh.completed.outcome is Outcome.SUCCEEDED


async def test_an_expiry_before_the_deadline_is_refused(mesh: Mesh) -> None:
    workflow_id, review = await _over_threshold(mesh)
    early = mesh.decision(review.review_id, ReviewDecision.EXPIRE, reviewer="policy:expiry")

    with pytest.raises(AnswerRefused, match="an expiry before the review's deadline"):
        await mesh.engine.decide(early)

    await _waits_for_its_review(mesh, workflow_id, review)


async def test_a_tool_result_naming_another_tool_is_refused(mesh: Mesh) -> None:
    workflow_id = await mesh.start("procurement", _buy(12000.0), amount=12000.0)
    [request] = mesh.envelopes(ToolCallRequested)
    published = len(mesh.publisher.events)
    forged = request.follow(
        ToolCallCompleted(
            call_id=request.payload.call_id,
            tool="erp.create_purchase_order",
            result={"po_id": "PO-1", "status": "created", "amount": 1.0},
            duration_ms=1,
        )
    )

    with pytest.raises(AnswerRefused, match=r"asked 'procurement\.check_policy', not 'erp"):
        await mesh.engine.resume(TOOL_RESULTS.adapter.validate_json(forged.model_dump_json()))

    assert _refused(mesh, published)["answering"] == str(request.payload.call_id)
    snapshot = await mesh.engine.state(workflow_id)
    assert snapshot is not None
    assert [i.value["call_id"] for i in snapshot.interrupts] == [str(request.payload.call_id)]


async def test_a_tool_result_from_another_tenant_is_refused(mesh: Mesh) -> None:
    await mesh.start("procurement", _buy(12000.0), amount=12000.0)
    [request] = mesh.envelopes(ToolCallRequested)
    answer = request.follow(mesh.tools(request.payload))

    with pytest.raises(AnswerRefused, match="for tenant 'globex'"):
        await mesh.engine.resume(answer.model_copy(update={"tenant": "globex"}))
    await mesh.engine.resume(answer)  # the genuine answer still resumes the run
    assert len(mesh.envelopes(ToolCallRequested)) == 1  # (it stops at the gate: no new call)
    assert len(mesh.reviews) == 1


# -- the semantic cache in support-triage ---------------------------------------------


async def test_a_cached_answer_skips_the_knowledge_base_and_the_model(
    cached_mesh: Mesh, cache: SemanticCache
) -> None:
    await cached_mesh.start("support-triage", TRIAGE_TEXT)
    await cached_mesh.run_tools()
    first = cached_mesh.completed
    cached_mesh.publisher.events.clear()

    workflow_id = await cached_mesh.start("support-triage", TRIAGE_TEXT)
    await cached_mesh.run_tools()

    assert cached_mesh.calls() == []
    assert cached_mesh.payloads(WorkflowToken) == []
    done = cached_mesh.completed
    # The knowledge base's answer, never the reply drafted for the first asker (it quotes
    # their own words).
    assert first.output["reply"] == DRAFTED
    assert done.output == {
        **first.output,
        "source": "cache",
        "similarity": 1.0,
        "reply": None,
        "drafted_by": None,
    }
    assert await cached_mesh.history(workflow_id) == [
        ("validate_input", "valid_input"),
        ("cache_lookup", "hit"),
    ]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.stores, stats.model_calls_saved) == (1, 1, 1, 1)


async def _steps_run(mesh: Mesh, workflow_id: uuid.UUID) -> set[str]:
    """The steps a run's checkpoints name as next, over its whole history."""
    graph = mesh.engine._graphs["support-triage"]
    config = {"configurable": {"thread_id": str(workflow_id)}}
    return {step async for snapshot in graph.aget_state_history(config) for step in snapshot.next}


async def test_the_cache_is_a_step_only_where_there_is_one(mesh: Mesh, cached_mesh: Mesh) -> None:
    """Without a cache the run goes from its input straight to the knowledge base: a
    step that could only say "no cache" would still cost a superstep and a checkpoint."""
    without = await mesh.start("support-triage", TRIAGE_TEXT)
    await mesh.run_tools()
    with_cache = await cached_mesh.start("support-triage", TRIAGE_TEXT)
    await cached_mesh.run_tools()

    assert mesh.completed.output["reply"] == cached_mesh.completed.output["reply"] == DRAFTED
    assert await _steps_run(cached_mesh, with_cache) - await _steps_run(mesh, without) == {
        "cache_lookup"
    }


async def test_what_is_cached_is_the_knowledge_bases_answer_not_the_draft(
    cached_mesh: Mesh, cache: SemanticCache
) -> None:
    question = "Jo Bloggs here, how do I reset my password?"
    await cached_mesh.start("support-triage", question)
    await cached_mesh.run_tools()
    assert "Jo Bloggs" in cached_mesh.completed.output["reply"]

    hit = await cache.lookup(tenant="acme", question=question)

    assert hit is not None
    assert hit.answer["answer"] == KB_ANSWER
    assert (hit.answer["reply"], hit.answer["drafted_by"]) == (None, None)
    assert "Jo Bloggs" not in json.dumps(hit.answer)


async def test_a_question_naming_another_order_is_never_served_a_cached_answer(
    cached_mesh: Mesh, cache: SemanticCache
) -> None:
    await cached_mesh.start("support-triage", "How do I track order 4411?")
    await cached_mesh.run_tools()
    cached_mesh.publisher.events.clear()

    await cached_mesh.start("support-triage", "How do I track order 4412?")
    await cached_mesh.run_tools()

    assert cached_mesh.completed.output["source"] == "knowledge_base"
    assert len(cached_mesh.calls("kb.search")) == 1
    assert cache.stats().hits == 0


async def test_the_cache_is_per_tenant(cached_mesh: Mesh, cache: SemanticCache) -> None:
    await cached_mesh.start("support-triage", TRIAGE_TEXT, tenant="acme")
    await cached_mesh.run_tools()
    cached_mesh.publisher.events.clear()

    await cached_mesh.start("support-triage", TRIAGE_TEXT, tenant="globex")
    await cached_mesh.run_tools()

    assert len(cached_mesh.calls("kb.search")) == 1
    assert cached_mesh.completed.output["source"] == "knowledge_base"
    assert (cache.stats().hits, cache.stats().misses) == (0, 2)


async def test_a_hand_over_to_a_person_is_neither_looked_up_nor_cached(
    cached_mesh: Mesh, cache: SemanticCache
) -> None:
    await cached_mesh.start("support-triage", TRIAGE_TEXT, needs_human=True)
    await cached_mesh.run_tools()
    [review] = cached_mesh.reviews

    await cached_mesh.decide(review, ReviewDecision.APPROVE)

    assert cached_mesh.completed.output["source"] == "agent"
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.stores) == (0, 0, 0)


# -- the timeline and the traces ---------------------------------------------------------


def _traced_mesh(spans: Spans) -> Mesh:
    """A mesh whose engine and models trace to ``spans`` (GenAI conventions)."""
    measured = Measurements()
    telemetry = GenAiTelemetry(tracer_provider=spans.provider, meter_provider=measured.provider)
    reasoning = Reasoning(models=ModelRouter(ModelsConfig(), observer=telemetry))
    return _mesh(
        reasoning,
        tracer=spans.provider.get_tracer("test"),
        meter=measured.provider.get_meter("test"),
    )


async def test_a_drafted_answer_is_audited_and_traced_by_the_conventions() -> None:
    spans = Spans()
    mesh = _traced_mesh(spans)
    await mesh.start("support-triage", "How do I reset my password?")
    await mesh.run_tools()

    assert [a.type for a in mesh.publisher.audits] == [
        "audit.model.called.v1",
        "audit.workflow.completed.v1",
    ]
    called, completed = (a.payload for a in mesh.publisher.audits)
    assert called.prompt is not None
    assert (called.prompt.name, called.prompt.version) == ("support-triage.draft", "1")
    assert (called.service, called.role, called.model) == (
        "orchestrator",
        "drafting",
        "pactmesh-offline:default",
    )
    assert called.raw_output == mesh.completed.output["reply"]
    assert called.usage.output_tokens > 0
    assert completed.usage is not None
    assert completed.usage.tokens == called.usage.tokens
    segments = spans.named("invoke_workflow support-triage")
    assert len(segments) == 2, "started, then resumed by the tool's result"
    assert {s.attributes["gen_ai.agent.name"] for s in segments} == {"support-triage"}
    (chat,) = spans.named("chat default")
    assert chat.attributes["gen_ai.provider.name"] == "pactmesh-offline"
    assert chat.attributes["gen_ai.usage.output_tokens"] == called.usage.output_tokens
    assert chat.parent is not None
    assert chat.parent.span_id == segments[1].context.span_id


async def test_a_review_pause_is_audited_and_the_resumed_segment_links_to_the_pause() -> None:
    spans = Spans()
    mesh = _traced_mesh(spans)
    await mesh.start("refund", REFUND_TEXT, order_id="4411", amount=450.0)
    await mesh.run_tools()
    [review] = mesh.reviews
    paused = spans.named("invoke_workflow refund")[-1]
    spans.clear()

    # The decision arrives hours later, in the reviewer's own trace.
    with spans.provider.get_tracer("hitl").start_as_current_span("POST /v1/reviews/decision"):
        pass
    await mesh.decide(review, ReviewDecision.APPROVE, comment="customer of ten years")

    resumed = spans.named("invoke_workflow refund")[0]
    assert resumed.context.trace_id != paused.context.trace_id
    (link,) = resumed.links
    assert (link.context.trace_id, link.context.span_id) == (
        paused.context.trace_id,
        paused.context.span_id,
    )
    kinds = [a.type for a in mesh.publisher.audits]
    assert kinds == [
        "audit.gate.fired.v1",
        "audit.review.decided.v1",
        "audit.workflow.completed.v1",
    ]
    fired, decided, _ = (a.payload for a in mesh.publisher.audits)
    assert (fired.rule, fired.review_id) == ("refund.amount_over_auto_limit", review.review_id)
    assert fired.proposed_action["amount"] == 450.0
    assert (decided.decision, decided.reviewer, decided.comment) == (
        ReviewDecision.APPROVE,
        "alice",
        "customer of ten years",
    )
