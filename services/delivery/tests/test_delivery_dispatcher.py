"""The dispatcher against a real outbox, with httpx's mock transport as the receiver and a
hand-driven clock (so retries are due when the test says, not when time passes)."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pactmesh_contracts.events import DeadLetter
from pactmesh_contracts.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    verify,
)
from pactmesh_delivery.adapters.dispatcher import Dispatcher
from pactmesh_delivery.adapters.store import open_stores
from pactmesh_delivery.domain.webhooks import (
    DeliveryState,
    DeliveryView,
    ResultRecord,
    RetryPolicy,
    Webhook,
    WebhookCreate,
    WebhookOutbox,
)
from pactmesh_delivery.settings import Settings
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE

POLICY = RetryPolicy(max_attempts=3, base_s=2.0, cap_s=30.0, attempt_timeout_s=1.0)
BODY = b'{"type":"workflow.result.v1","payload":{"outcome":"succeeded"}}'


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Receiver:
    """Answers each POST with the next of ``statuses`` (the last one repeats)."""

    statuses: list[int | Exception]
    requests: list[httpx.Request] = field(default_factory=list)
    gate: asyncio.Event | None = None
    in_flight: int = 0
    most_in_flight: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.arrived.set()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            answer = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
            if isinstance(answer, Exception):
                raise answer
            return httpx.Response(answer, text="receiver says no" if answer >= 300 else "")
        finally:
            self.in_flight -= 1


@dataclass
class Setup:
    store: WebhookOutbox
    clock: Clock
    spans: InMemorySpanExporter
    webhook: Webhook
    dead: list[tuple[DeadLetter, bytes | None]] = field(default_factory=list)
    dlq_down: bool = False

    async def dead_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        if self.dlq_down:
            raise ConnectionError("kafka unreachable")
        self.dead.append((letter, key))

    def dispatcher(
        self,
        receiver: Receiver,
        *,
        concurrency: int = 4,
        clock: Callable[[], float] | None = None,
        poll_interval_s: float = 1.0,
    ) -> Dispatcher:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        return Dispatcher(
            outbox=self.store,
            client=httpx.AsyncClient(transport=httpx.MockTransport(receiver)),
            dead_letters=self.dead_letter,
            policy=POLICY,
            service="delivery",
            tracer=provider.get_tracer("test"),
            concurrency=concurrency,
            poll_interval_s=poll_interval_s,
            clock=clock or self.clock,
        )

    async def deliveries(self) -> list[DeliveryView]:
        found = await self.store.deliveries(tenant="acme", webhook_id=self.webhook.id, limit=50)
        assert found is not None
        return found


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


@pytest.fixture
def settings(store_backend: StoreBackend) -> Settings:
    return Settings(**store_backend.settings())


@pytest.fixture
async def setup(settings: Settings, spans: InMemorySpanExporter) -> AsyncIterator[Setup]:
    async with open_stores(settings) as stores:
        store = stores.webhooks
        clock = Clock()
        spec = WebhookCreate.model_validate({"url": "https://hooks.example/in"})
        webhook = await store.create_webhook(
            tenant="acme", spec=spec, secret="s3cret", now=clock.now
        )
        yield Setup(store, clock, spans, webhook)


def result(workflow_id: uuid.UUID | None = None) -> ResultRecord:
    return ResultRecord(
        result_event_id=uuid.uuid4(),
        workflow_id=workflow_id or uuid.uuid4(),
        workflow="refund",
        tenant="acme",
        body=BODY,
        key=b"the-key",
        headers={"event-type": "workflow.result.v1"},
        source_topic="pactmesh.results.refund",
        source_partition=3,
        source_offset=17,
        trace_context={},
    )


async def settle(dispatcher: Dispatcher) -> int:
    """One dispatch pass, waiting for the attempts it started."""
    started = await dispatcher.dispatch_due()
    await dispatcher.drain(timeout_s=5)
    return started


async def test_a_result_is_posted_signed_and_marked_delivered(setup: Setup) -> None:
    receiver = Receiver([204])
    dispatcher = setup.dispatcher(receiver)
    done = result()
    await setup.store.enqueue(done, now=setup.clock.now)

    assert await settle(dispatcher) == 1
    assert await settle(dispatcher) == 0

    [request] = receiver.requests
    assert request.method == "POST"
    assert str(request.url) == "https://hooks.example/in"
    assert request.content == BODY
    assert request.headers["content-type"] == "application/json"
    verify("s3cret", request.headers[SIGNATURE_HEADER], request.content, now=setup.clock.now)
    [view] = await setup.deliveries()
    assert request.headers[DELIVERY_HEADER] == str(view.id)
    assert request.headers[EVENT_HEADER] == str(done.result_event_id)
    assert (view.state, view.attempts, view.last_status) == (DeliveryState.DELIVERED, 1, 204)


async def test_a_signature_made_with_another_secret_does_not_verify(setup: Setup) -> None:
    receiver = Receiver([200])
    await setup.store.enqueue(result(), now=setup.clock.now)
    await settle(setup.dispatcher(receiver))
    with pytest.raises(SignatureError):
        verify("not-the-secret", receiver.requests[0].headers[SIGNATURE_HEADER], BODY)


async def test_failures_are_retried_after_their_backoff_then_delivered_once(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("random.uniform", lambda low, high: high)
    receiver = Receiver([500, 503, 200])
    dispatcher = setup.dispatcher(receiver)
    await setup.store.enqueue(result(), now=setup.clock.now)

    await settle(dispatcher)
    [view] = await setup.deliveries()
    assert (view.state, view.attempts, view.last_status) == (DeliveryState.PENDING, 1, 500)
    assert view.last_error == "HTTP 500 (16 bytes)"  # its size, never what it said
    assert view.next_attempt_at is not None
    assert view.next_attempt_at.timestamp() == setup.clock.now + 2.0  # base * 2**0

    setup.clock.now += 1.9
    assert await settle(dispatcher) == 0  # not due yet
    setup.clock.now += 0.1
    await settle(dispatcher)
    [view] = await setup.deliveries()
    assert view.next_attempt_at is not None
    assert view.next_attempt_at.timestamp() == setup.clock.now + 4.0  # base * 2**1

    setup.clock.now += 4.0
    await settle(dispatcher)
    setup.clock.now += 1_000
    assert await settle(dispatcher) == 0

    assert len(receiver.requests) == 3
    assert len({r.headers[DELIVERY_HEADER] for r in receiver.requests}) == 1
    [view] = await setup.deliveries()
    assert (view.state, view.attempts, view.last_status) == (DeliveryState.DELIVERED, 3, 200)


async def test_after_the_last_attempt_the_result_is_dead_lettered_with_the_reason(
    setup: Setup,
) -> None:
    receiver = Receiver([500])
    dispatcher = setup.dispatcher(receiver)
    done = result()
    await setup.store.enqueue(done, now=setup.clock.now)

    for _ in range(POLICY.max_attempts):
        await settle(dispatcher)
        setup.clock.now += POLICY.cap_s
    setup.clock.now += 1_000
    await settle(dispatcher)

    assert len(receiver.requests) == POLICY.max_attempts
    [(letter, key)] = setup.dead
    [view] = await setup.deliveries()
    assert (view.state, view.attempts, view.last_status) == (DeliveryState.DEAD, 3, 500)
    assert key == b"the-key"
    assert letter.original_value() == BODY
    assert base64.b64decode(letter.original_key_b64 or "") == b"the-key"
    assert (letter.service, letter.error_code) == ("delivery", "refused")
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "pactmesh.results.refund",
        3,
        17,
    )
    assert letter.original_headers == {"event-type": "workflow.result.v1"}
    assert "after 3 attempts; last: HTTP 500 (16 bytes)" in letter.error
    assert "receiver says no" not in letter.model_dump_json()
    assert letter.errors == [
        {
            "type": "webhook_delivery_failed",
            "webhook_id": str(setup.webhook.id),
            "delivery_id": str(view.id),
            "url": "https://hooks.example/in",
            "result_event_id": str(done.result_event_id),
            "attempts": 3,
            "last_status": 500,
            "last_error": "HTTP 500 (16 bytes)",
        }
    ]


async def test_an_unreachable_dead_letter_topic_is_retried_without_posting_again(
    setup: Setup,
) -> None:
    receiver = Receiver([httpx.ConnectError("connection refused")])
    dispatcher = setup.dispatcher(receiver)
    await setup.store.enqueue(result(), now=setup.clock.now)
    setup.dlq_down = True

    for _ in range(POLICY.max_attempts):
        await settle(dispatcher)
        setup.clock.now += POLICY.cap_s
    [view] = await setup.deliveries()
    assert (view.state, view.last_status, view.last_error) == (
        DeliveryState.PENDING,
        None,
        "ConnectError: connection refused",
    )

    setup.dlq_down = False
    setup.clock.now += POLICY.lease_s
    await settle(dispatcher)

    assert len(receiver.requests) == POLICY.max_attempts
    [(letter, _)] = setup.dead
    assert "last: ConnectError: connection refused" in letter.error
    assert [v.state for v in await setup.deliveries()] == [DeliveryState.DEAD]


async def test_a_receiver_slower_than_the_attempt_timeout_is_a_failed_attempt(
    setup: Setup,
) -> None:
    receiver = Receiver([200], gate=asyncio.Event())  # never answers
    await setup.store.enqueue(result(), now=setup.clock.now)

    await settle(setup.dispatcher(receiver))

    [view] = await setup.deliveries()
    assert (view.state, view.last_status, view.last_error) == (
        DeliveryState.PENDING,
        None,
        f"timed out after {POLICY.attempt_timeout_s}s",
    )


async def test_attempts_in_flight_never_exceed_the_concurrency(setup: Setup) -> None:
    gate = asyncio.Event()
    receiver = Receiver([200], gate=gate)
    dispatcher = setup.dispatcher(receiver, concurrency=2)
    for _ in range(5):
        await setup.store.enqueue(result(), now=setup.clock.now)

    assert await dispatcher.dispatch_due() == 2
    assert await dispatcher.dispatch_due() == 0
    async with asyncio.timeout(5):
        while receiver.in_flight < 2:
            receiver.arrived.clear()
            await receiver.arrived.wait()
    gate.set()
    await dispatcher.drain(timeout_s=5)
    while await settle(dispatcher):
        pass

    assert receiver.most_in_flight == 2
    assert len(receiver.requests) == 5
    assert {v.state for v in await setup.deliveries()} == {DeliveryState.DELIVERED}


async def test_each_attempt_is_a_span_carrying_the_workflow_id(
    setup: Setup, spans: InMemorySpanExporter
) -> None:
    workflow_id = uuid.uuid4()
    receiver = Receiver([502, 200])
    dispatcher = setup.dispatcher(receiver)
    await setup.store.enqueue(result(workflow_id), now=setup.clock.now)

    await settle(dispatcher)
    setup.clock.now += POLICY.cap_s
    await settle(dispatcher)

    attempts = [s for s in spans.get_finished_spans() if s.name == "webhook deliver"]
    assert [dict(s.attributes or {})["pactmesh.webhook.attempt"] for s in attempts] == [1, 2]
    for span in attempts:
        assert dict(span.attributes or {})[WORKFLOW_ID_ATTRIBUTE] == str(workflow_id)
    assert [dict(s.attributes or {})["http.response.status_code"] for s in attempts] == [502, 200]
    assert [s.status.status_code.name for s in attempts] == ["ERROR", "UNSET"]


async def test_the_run_loop_delivers_what_is_queued_while_it_waits(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = asyncio.Event()
    next_due_at = setup.store.next_due_at

    async def spy() -> float | None:
        waiting.set()  # the pass is over: the loop goes to sleep next
        return await next_due_at()

    monkeypatch.setattr(setup.store, "next_due_at", spy)
    receiver = Receiver([200])
    dispatcher = setup.dispatcher(receiver, clock=time.time, poll_interval_s=60)
    task = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.wait_for(waiting.wait(), 5)
        await setup.store.enqueue(result(), now=time.time())
        dispatcher.wake()
        async with asyncio.timeout(5):  # far sooner than the next poll: the wake-up did it
            while await states(setup) != {DeliveryState.DELIVERED}:  # noqa: ASYNC110 - rows
                await asyncio.sleep(0.01)
        assert len(receiver.requests) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def states(setup: Setup) -> set[DeliveryState]:
    return {v.state for v in await setup.deliveries()}


async def test_dispatchers_of_two_instances_post_each_delivery_once(
    setup: Setup, settings: Settings
) -> None:
    """Two instances' dispatchers on one outbox (Postgres: two pools), both passing at
    once while the receiver is slow: every delivery is POSTed exactly once."""
    receiver = Receiver([204], gate=asyncio.Event())
    queued = [result() for _ in range(12)]
    for done in queued:
        await setup.store.enqueue(done, now=setup.clock.now)
    async with (
        open_stores(settings) as other,
        httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client,
    ):
        first = setup.dispatcher(receiver, concurrency=8)
        second = Dispatcher(
            outbox=other.webhooks,
            client=client,
            dead_letters=setup.dead_letter,
            policy=POLICY,
            service="delivery",
            concurrency=8,
            clock=setup.clock,
        )
        started = await asyncio.gather(first.dispatch_due(), second.dispatch_due())
        again = await asyncio.gather(first.dispatch_due(), second.dispatch_due())
        receiver.gate.set()  # type: ignore[union-attr]
        await asyncio.gather(first.drain(timeout_s=5), second.drain(timeout_s=5))

    assert sum(started) == len(queued)
    assert again == [0, 0]  # still leased while their attempts are in flight
    posted = sorted(r.headers[EVENT_HEADER] for r in receiver.requests)
    assert posted == sorted(str(done.result_event_id) for done in queued)
    assert await states(setup) == {DeliveryState.DELIVERED}
