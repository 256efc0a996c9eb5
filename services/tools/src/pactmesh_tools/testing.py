"""Running the tools service's handler and dispatcher on FastStream's in-memory broker,
for tests: requests go in on the calls topic, results are collected as they come out."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaBroker, TestKafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import AuditRecorded, AuditToolCalled, ToolCallRequested
from pactmesh_contracts.topics import AUDIT, TOOL_CALLS, TOOL_RESULTS, ToolResult
from pactmesh_kit.auth import AccessPolicy, load_access_policy
from pactmesh_kit.auth.policy import Grant
from pactmesh_kit.kafka import Kafka, Record, encode
from pactmesh_kit.provenance import FILE as ACCEPTED_REQUESTS_FILE
from pactmesh_kit.provenance import Provenance

from pactmesh_tools import handlers
from pactmesh_tools.adapters.inbox import open_inbox
from pactmesh_tools.domain.dispatcher import Dispatcher, ResultPublisher
from pactmesh_tools.domain.inbox import Inbox
from pactmesh_tools.domain.registry import ToolRegistry
from pactmesh_tools.domain.resilience import Backends
from pactmesh_tools.runtime import Runtime
from pactmesh_tools.settings import Settings

TEST_WORKFLOW = "test-workflow"
"""The workflow tests call tools for, by default: ``policy_allowing`` lets it use them."""
TEST_PRINCIPAL = Principal(subject="user-1", roles=("requester",), scopes=("workflow:test",))
"""Who tests call tools for, by default: granted every tool ``policy_allowing`` names."""


def policy_allowing(tools: Iterable[str], *, base: AccessPolicy | None = None) -> AccessPolicy:
    """``base`` (the packaged policy by default) plus ``TEST_WORKFLOW``, which may use
    ``tools``, granted to ``TEST_PRINCIPAL`` by the scope ``workflow:test``."""
    base = base or load_access_policy()
    tools = frozenset(tools)
    return base.model_copy(
        update={
            "workflow_tools": {**base.workflow_tools, TEST_WORKFLOW: tools},
            "scopes": {
                **base.scopes,
                "workflow:test": Grant(workflows=frozenset({TEST_WORKFLOW}), tools=tools),
            },
        }
    )


@dataclass
class RunningTools:
    """The handler and dispatcher over an in-memory broker, and every result published."""

    broker: KafkaBroker
    settings: Settings
    dispatcher: Dispatcher
    inbox: Inbox
    received: list[Envelope[ToolResult]]
    audits: list[Envelope[AuditRecorded]]
    """Every refusal recorded on the audit topic."""
    provenance: Provenance
    """The requests the mesh accepted, as far as the dispatcher knows."""
    timeline: list[Envelope[AuditToolCalled]] = dataclasses.field(default_factory=list)
    """Every tool call recorded on the audit topic (arguments and result)."""
    arrived: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set whenever a result arrives."""

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        key: str = "wf:step",
        workflow: str | None = TEST_WORKFLOW,
        principal: Principal = TEST_PRINCIPAL,
        vouched: bool = True,
    ) -> Envelope[Any]:
        """Request a call for ``workflow`` on behalf of ``principal`` (in a request the
        mesh accepted from them, unless not ``vouched``); the handler has recorded it when
        this returns."""
        request = new_event(
            ToolCallRequested(
                call_id=uuid.uuid4(),
                tool=tool,
                arguments=arguments,
                idempotency_key=key,
                workflow=workflow,
            ),
            workflow_id=uuid.uuid4(),
            tenant="acme",
            principal=principal,
        )
        await self.send(request, vouched=vouched)
        return request

    async def send(self, request: Envelope[Any], *, vouched: bool = True) -> None:
        """Deliver ``request`` on the calls topic (again, for a redelivery), first
        recording its request as accepted from its principal when ``vouched``."""
        if vouched:
            await self.provenance.record(request)
        topic = TOOL_CALLS.qualified(self.settings.topic_prefix)
        await self.broker.publish(encode(request), topic, key=request.key)

    async def results(self, count: int, *, within_s: float = 10.0) -> list[Envelope[ToolResult]]:
        """The results once there are at least ``count``; ``TimeoutError`` after
        ``within_s``."""
        await self._until(lambda: len(self.received) >= count, within_s)
        return list(self.received)

    async def answer_to(
        self, request: Envelope[Any], *, within_s: float = 10.0
    ) -> Envelope[ToolResult]:
        """The one result for ``request``, once there is one."""
        call_id = request.payload.call_id

        def answers() -> list[Envelope[ToolResult]]:
            return [r for r in self.received if r.payload.call_id == call_id]

        await self._until(lambda: bool(answers()), within_s)
        [answer] = answers()
        return answer

    async def _until(self, condition: Callable[[], bool], within_s: float) -> None:
        async with asyncio.timeout(within_s):
            while not condition():
                self.arrived.clear()
                await self.arrived.wait()


@asynccontextmanager
async def running_tools(
    registry: ToolRegistry,
    *,
    settings: Settings,
    tracer_provider: TracerProvider | None = None,
    publisher: Callable[[ResultPublisher], ResultPublisher] = lambda real: real,
    policy: AccessPolicy | None = None,
    provenance_wait_s: float = 0.2,
    **limits: Any,
) -> AsyncIterator[RunningTools]:
    """The handler and dispatcher over ``registry``, the inbox ``settings`` select.

    ``limits`` override the dispatcher's (``max_in_flight=20``); ``publisher`` wraps the
    real publisher; ``tracer_provider`` traces the broker and the dispatcher; ``policy``
    is the access policy (by default the packaged one, plus ``TEST_WORKFLOW`` allowed
    every tool of ``registry``); a call naming a request not recorded as accepted waits
    ``provenance_wait_s`` for it.
    """
    kafka = Kafka(settings, tracer_provider=tracer_provider)
    provenance = Provenance(wait_s=provenance_wait_s)
    dispatcher = Dispatcher(
        registry=registry,
        access=policy
        or policy_allowing(registry.names, base=load_access_policy(settings.access_policy_file)),
        requests=provenance,
        publisher=publisher(kafka.publisher(TOOL_RESULTS, AUDIT)),
        limits=dataclasses.replace(settings.dispatch_limits(), **limits),
        tracer=tracer_provider.get_tracer(__name__) if tracer_provider else None,
    )
    backends = Backends(settings.backend_limits)  # the registry's own are not the API's here
    handlers.register(
        kafka,
        Runtime(settings=settings, dispatcher=dispatcher, registry=registry, backends=backends),
    )
    received, audits, timeline, arrived = _observed(kafka)
    async with (
        TestKafkaBroker(kafka.broker),
        provenance.opened(settings.data_dir / ACCEPTED_REQUESTS_FILE),
        open_inbox(settings) as inbox,
        dispatcher.running(inbox),
    ):
        yield RunningTools(
            kafka.broker,
            settings,
            dispatcher,
            inbox,
            received,
            audits,
            provenance,
            timeline,
            arrived,
        )


def _observed(
    kafka: Kafka,
) -> tuple[
    list[Envelope[ToolResult]],
    list[Envelope[AuditRecorded]],
    list[Envelope[AuditToolCalled]],
    asyncio.Event,
]:
    """Every result, refusal and tool-call audit ``kafka`` will carry, and an event set
    whenever a result arrives."""
    received: list[Envelope[ToolResult]] = []
    audits: list[Envelope[AuditRecorded]] = []
    timeline: list[Envelope[AuditToolCalled]] = []
    arrived = asyncio.Event()

    @kafka.subscriber(TOOL_RESULTS, name="test-observer.tool.results")
    async def on_result(event: Envelope[ToolResult], record: Record) -> None:
        received.append(event)
        arrived.set()

    @kafka.subscriber(AUDIT, name="test-observer.audit")
    async def on_audit(event: Envelope[Any], record: Record) -> None:
        if isinstance(event.payload, AuditRecorded):
            audits.append(event)
        elif isinstance(event.payload, AuditToolCalled):
            timeline.append(event)

    return received, audits, timeline, arrived


RunTools = Callable[..., AbstractAsyncContextManager[RunningTools]]
"""``running_tools`` with its settings bound (the ``run_tools`` test fixture)."""
