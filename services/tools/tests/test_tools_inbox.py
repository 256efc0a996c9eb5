"""The durable inbox: the handler records calls and returns, the dispatcher runs them
concurrently, once each, and again after a restart."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from pactmesh_contracts.envelope import Envelope, new_event
from pactmesh_contracts.events import (
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
)
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_kit.provenance import Provenance, RequestNotReadYet
from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE
from pactmesh_tools.adapters.inbox import INBOX_FILE, open_inbox
from pactmesh_tools.domain.dispatcher import ResultPublisher
from pactmesh_tools.domain.inbox import DispatchLimits
from pactmesh_tools.domain.registry import Tool, ToolPolicy, ToolRegistry
from pactmesh_tools.domain.resilience import BackendLimits, Backends, CallContext
from pactmesh_tools.settings import Settings
from pactmesh_tools.testing import TEST_PRINCIPAL, TEST_WORKFLOW, RunTools, running_tools
from pydantic import BaseModel


class Nap(BaseModel):
    seconds: float = 0.5


class Woke(BaseModel):
    slept_s: float


class SlowBackend:
    """A tool that sleeps behind a backend guard, counting the calls inside it at once."""

    def __init__(self, *, concurrency: int = 10_000) -> None:
        limits = BackendLimits(concurrency=concurrency, breaker_threshold=5, breaker_cooldown_s=1)
        self.guards = Backends(lambda _name: limits)
        self.running = 0
        self.peak = 0
        self.runs: Counter[str] = Counter()
        """Attempts by idempotency key."""
        self.fail_with: Exception | None = None
        self.started = asyncio.Event()

    def registry(self, tracer: Tracer | None = None) -> ToolRegistry:
        return ToolRegistry(
            [Tool("test.nap", "Sleeps.", Nap, Woke, self._run)],
            policy=lambda _tool: ToolPolicy(max_attempts=1, attempt_timeout_s=10),
            tracer=tracer,
        )

    async def _run(self, args: Nap, ctx: CallContext) -> Woke:
        async def request() -> Woke:
            self.runs[ctx.idempotency_key] += 1
            self.started.set()
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                await asyncio.sleep(args.seconds)
            finally:
                self.running -= 1
            if self.fail_with is not None:
                raise self.fail_with
            return Woke(slept_s=args.seconds)

        return await self.guards["nap"].call(request, ctx=ctx)


def _rows(data_dir: Path) -> dict[str, str]:
    """Call id -> status, read from the inbox file by another connection."""
    with closing(sqlite3.connect(data_dir / INBOX_FILE)) as db:
        return dict(db.execute("SELECT call_id, status FROM inbox").fetchall())


async def test_slow_calls_run_concurrently(run_tools: RunTools) -> None:
    backend = SlowBackend()
    async with run_tools(backend.registry(), batch_size=16) as service:
        requests = [
            await service.call("test.nap", {"seconds": 0.5}, key=f"k{i}") for i in range(200)
        ]
        results = await service.results(200, within_s=30)

    assert {r.payload.call_id for r in results} == {r.payload.call_id for r in requests}
    assert all(isinstance(r.payload, ToolCallCompleted) for r in results)
    assert backend.peak > 50, backend.peak
    assert set(backend.runs.values()) == {1}


async def test_the_in_flight_cap_holds(run_tools: RunTools) -> None:
    backend = SlowBackend()
    async with run_tools(backend.registry(), max_in_flight=7, batch_size=3) as service:
        for i in range(40):
            await service.call("test.nap", {"seconds": 0.05}, key=f"k{i}")
        await service.results(40)

    assert backend.peak == 7


async def test_the_backend_concurrency_limit_still_applies(run_tools: RunTools) -> None:
    backend = SlowBackend(concurrency=4)
    async with run_tools(backend.registry()) as service:
        for i in range(20):
            await service.call("test.nap", {"seconds": 0.05}, key=f"k{i}")
        await service.results(20)

    assert backend.peak == 4


async def test_the_handler_returns_before_the_call_has_run(
    run_tools: RunTools, tmp_path: Path
) -> None:
    backend = SlowBackend()
    async with run_tools(backend.registry()) as service:
        request = await service.call("test.nap", {"seconds": 0.3})
        call_id = str(request.payload.call_id)
        assert (_rows(tmp_path), service.received) == ({call_id: "pending"}, [])

        await service.answer_to(request)
    assert _rows(tmp_path) == {call_id: "done"}


async def test_a_redelivered_request_is_answered_once(run_tools: RunTools) -> None:
    backend = SlowBackend()
    async with run_tools(backend.registry()) as service:
        request = await service.call("test.nap", {"seconds": 0.2}, key="once")
        await service.send(request)  # redelivered while the call runs
        await service.answer_to(request)
        await service.send(request)  # and again once it is answered
        # A later call's answer, after which a second answer would have arrived too.
        later = await service.call("test.nap", {"seconds": 0.3}, key="later")
        await service.answer_to(later)

        assert [r.payload.call_id for r in service.received].count(request.payload.call_id) == 1
    assert backend.runs == {"once": 1, "later": 1}


async def test_the_result_follows_the_request(run_tools: RunTools) -> None:
    backend = SlowBackend()
    async with run_tools(backend.registry()) as service:
        request = await service.call("test.nap", {"seconds": 0.01})
        answer = await service.answer_to(request)

    assert answer.workflow_id == request.workflow_id
    assert answer.causation_id == request.event_id
    assert (answer.tenant, answer.principal) == (request.tenant, request.principal)
    assert answer.key == request.key
    assert isinstance(answer.payload, ToolCallCompleted)
    assert (answer.payload.tool, answer.payload.result) == ("test.nap", {"slept_s": 0.01})


async def test_failures_are_still_answered(run_tools: RunTools) -> None:
    backend = SlowBackend()
    backend.fail_with = RuntimeError("backend exploded")
    async with run_tools(backend.registry()) as service:
        crashed = await service.call("test.nap", {"seconds": 0.01})
        invalid = await service.call("test.nap", {"seconds": "long"})
        late = await service.call("test.nap", {"seconds": 0.01})
        crashed_answer = await service.answer_to(crashed)
        invalid_answer = await service.answer_to(invalid)
        await service.answer_to(late)

    assert isinstance(crashed_answer.payload, ToolCallFailed)
    assert crashed_answer.payload.error_code is ToolErrorCode.BACKEND_ERROR
    assert crashed_answer.causation_id == crashed.event_id
    assert isinstance(invalid_answer.payload, ToolCallFailed)
    assert invalid_answer.payload.error_code is ToolErrorCode.INVALID_ARGUMENTS
    assert invalid_answer.payload.attempts == 0


async def test_the_dispatcher_prunes_done_calls_but_not_pending_ones(
    run_tools: RunTools, tmp_path: Path
) -> None:
    backend = SlowBackend()
    async with run_tools(backend.registry(), retention_s=0, prune_interval_s=0.02) as service:
        quick = await service.call("test.nap", {"seconds": 0.01}, key="quick")
        slow = await service.call("test.nap", {"seconds": 2}, key="slow")
        await service.answer_to(quick)
        async with asyncio.timeout(5):
            while str(quick.payload.call_id) in _rows(tmp_path):  # noqa: ASYNC110 - a file
                await asyncio.sleep(0.02)

        assert _rows(tmp_path) == {str(slow.payload.call_id): "pending"}


def _request(**arguments: Any) -> Envelope[Any]:
    return new_event(
        ToolCallRequested(
            call_id=uuid.uuid4(),
            tool="test.nap",
            arguments=arguments,
            idempotency_key="k",
            workflow=TEST_WORKFLOW,
        ),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=TEST_PRINCIPAL,
    )


async def test_calls_left_pending_run_at_start(run_tools: RunTools, tmp_path: Path) -> None:
    left = [_request(seconds=0.01) for _ in range(5)]
    async with open_inbox(Settings(data_dir=tmp_path)) as inbox:
        for request in left:
            envelope = request.model_dump_json()
            await inbox.record(call_id=request.payload.call_id, envelope=envelope, traceparent=None)

    backend = SlowBackend()
    async with run_tools(backend.registry(), batch_size=2) as service:
        answers = [await service.answer_to(request) for request in left]

    assert [a.causation_id for a in answers] == [r.event_id for r in left]
    assert set(_rows(tmp_path).values()) == {"done"}


async def test_a_call_cut_short_by_a_stop_runs_again_at_the_next_start(
    run_tools: RunTools, tmp_path: Path
) -> None:
    backend = SlowBackend()
    async with run_tools(backend.registry()) as service:
        request = await service.call("test.nap", {"seconds": 0.5}, key="cut")
        async with asyncio.timeout(5):
            await backend.started.wait()
    assert _rows(tmp_path) == {str(request.payload.call_id): "pending"}

    async with run_tools(backend.registry()) as service:
        answer = await service.answer_to(request)
    assert answer.causation_id == request.event_id
    assert backend.runs == {"cut": 2}
    assert _rows(tmp_path) == {str(request.payload.call_id): "done"}


async def test_a_refused_publish_is_retried_without_running_the_call_again(
    run_tools: RunTools,
) -> None:
    class Flaky:
        def __init__(self, real: ResultPublisher) -> None:
            self.real, self.refusals = real, 2

        async def publish(self, event: Envelope[Any]) -> None:
            if self.refusals:
                self.refusals -= 1
                raise ConnectionError("kafka is away")
            await self.real.publish(event)

    backend = SlowBackend()
    async with run_tools(backend.registry(), publisher=Flaky) as service:
        request = await service.call("test.nap", {"seconds": 0.01}, key="flaky")
        await service.answer_to(request)
    assert backend.runs == {"flaky": 1}


async def test_the_result_is_published_in_the_trace_of_the_request(run_tools: RunTools) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    backend = SlowBackend()
    registry = backend.registry(provider.get_tracer("test"))
    async with run_tools(registry, tracer_provider=provider) as service:
        request = await service.call("test.nap", {"seconds": 0.01})
        await service.answer_to(request)
        await asyncio.sleep(0)  # let the result's consumer span end

    finished = spans.get_finished_spans()
    [dispatch] = [s for s in finished if s.name == "dispatch test.nap"]
    [received] = [s for s in finished if s.name.endswith("tool.calls process")]
    assert dispatch.parent is not None
    assert dispatch.parent.span_id == received.context.span_id
    assert dispatch.attributes is not None
    assert dispatch.attributes[WORKFLOW_ID_ATTRIBUTE] == str(request.workflow_id)
    assert dispatch.attributes["pactmesh.tool.call_id"] == str(request.payload.call_id)
    [tool] = [s for s in finished if s.name == "execute_tool test.nap"]
    assert tool.parent is not None
    assert tool.parent.span_id == dispatch.context.span_id
    trace_id = received.context.trace_id
    assert {s.name for s in finished if s.context.trace_id == trace_id} >= {
        "execute_tool test.nap",
        "tools-test.tool.results publish",
        "tools-test.tool.results process",
    }


def test_dispatch_settings_and_their_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("MAX_IN_FLIGHT", "INBOX_BATCH_SIZE", "INBOX_RETENTION_S", "INBOX_PRUNE_INTERVAL_S")
    for name in names:
        monkeypatch.delenv(f"PACTMESH_TOOLS_{name}", raising=False)
    assert Settings().dispatch_limits() == DispatchLimits(
        max_in_flight=10_000, batch_size=500, retention_s=3_600, prune_interval_s=60
    )
    monkeypatch.setenv("PACTMESH_TOOLS_MAX_IN_FLIGHT", "250")
    monkeypatch.setenv("PACTMESH_TOOLS_INBOX_BATCH_SIZE", "50")
    monkeypatch.setenv("PACTMESH_TOOLS_INBOX_RETENTION_S", "60")
    monkeypatch.setenv("PACTMESH_TOOLS_INBOX_PRUNE_INTERVAL_S", "5")
    monkeypatch.setenv("PACTMESH_TOOLS_CONCURRENCY", "10000")
    settings = Settings()

    assert settings.dispatch_limits() == DispatchLimits(
        max_in_flight=250, batch_size=50, retention_s=60, prune_interval_s=5
    )
    assert settings.backend_limits("carriers.oceanic").concurrency == 10_000


async def test_two_instances_sharing_an_inbox_run_each_call_once(
    store_backend: StoreBackend,
) -> None:
    """Calls recorded by one instance's handler are run by whichever dispatcher claims
    them first (on Postgres, the inbox several instances share): each exactly once."""
    backend = SlowBackend()
    settings = Settings(topic_prefix="tools-test.", **store_backend.settings())
    registry = backend.registry()
    # Each instance runs 4 calls at once and looks for more every second (a third of its
    # lease): the first cannot take them all, so the second runs some. The lease leaves
    # a renewal two seconds to arrive: one 0.4 s late on a busy machine (a lease of 0.6 s
    # here once) let the other instance take a call still running, which is what a lease
    # is for when its holder has stopped, not when it is slow.
    limits = {"max_in_flight": 4, "batch_size": 4, "lease_s": 3.0}
    async with (
        running_tools(registry, settings=settings, **limits) as one,
        running_tools(registry, settings=settings, **limits) as two,
    ):
        requests = [await one.call("test.nap", {"seconds": 0.2}, key=f"k{i}") for i in range(24)]
        async with asyncio.timeout(20):
            while len(one.received) + len(two.received) < len(requests):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    answered = [r.payload.call_id for r in one.received + two.received]
    assert sorted(answered) == sorted(r.payload.call_id for r in requests)
    assert set(backend.runs.values()) == {1}
    assert two.received, "the second instance's dispatcher took calls too"


@pytest.mark.parametrize("store_backend", ["postgres"], indirect=True)
async def test_a_call_whose_request_another_instance_recorded_is_run(
    store_backend: StoreBackend,
) -> None:
    """Two instances on their own machines (data dirs) share Postgres: the accepted
    request read by the first instance's consumer vouches for the call the second
    instance's consumer is handed (with a record per instance, the second waited for a
    request it never read and refused the call)."""
    backend = SlowBackend()
    first = Settings(topic_prefix="tools-test.", **store_backend.settings())
    second = first.model_copy(update={"data_dir": store_backend.data_dir / "second"})
    recorder = Provenance(wait_s=0)
    async with (
        recorder.opened(first),
        running_tools(backend.registry(), settings=second, provenance_wait_s=5) as two,
    ):
        request = new_event(
            ToolCallRequested(
                call_id=uuid.uuid4(),
                tool="test.nap",
                arguments={"seconds": 0.01},
                idempotency_key="k",
                workflow=TEST_WORKFLOW,
            ),
            workflow_id=uuid.uuid4(),
            tenant="acme",
            principal=TEST_PRINCIPAL,
        )
        await recorder.record(request)
        await two.send(request, vouched=False)

        answer = await two.answer_to(request)

    assert isinstance(answer.payload, ToolCallCompleted), answer.payload
    assert backend.runs == {"k": 1}


async def test_a_call_whose_request_is_not_read_yet_waits_for_it_and_is_not_refused(
    run_tools: RunTools, caplog: pytest.LogCaptureFixture
) -> None:
    """The service has not read every accepted request yet (an instance of it killed,
    its partitions not handed over): the call stays pending and runs, once, when it is
    claimed again after its lease, instead of being refused; said as a warning, not as
    a call that could not be run."""
    backend = SlowBackend()
    async with run_tools(backend.registry(), lease_s=0.5) as service:
        check = service.provenance.refusal
        lagging = [RequestNotReadYet("the accepted requests are not all read yet")]

        async def refusal(event: Envelope[Any]) -> str | None:
            if lagging:
                raise lagging.pop()
            return await check(event)

        service.provenance.refusal = refusal  # type: ignore[method-assign]
        request = await service.call("test.nap", {"seconds": 0.01}, key="late")
        answer = await service.answer_to(request)

    assert isinstance(answer.payload, ToolCallCompleted), answer.payload
    assert not lagging
    assert service.audits == []  # no refusal audited
    assert backend.runs == {"late": 1}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert any("waits for its request" in r.getMessage() for r in caplog.records)
