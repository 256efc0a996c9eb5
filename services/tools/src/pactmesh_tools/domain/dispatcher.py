"""Running tool calls from the inbox, many at once (the transactional-inbox pattern).

The Kafka handler only records a request in the inbox and returns, so the consumer
commits its offset once the call is durable rather than once it has run: one slow
backend no longer holds up every call behind it. The dispatcher then runs pending calls
concurrently through the ``ToolRegistry`` (each backend's concurrency limit, retries,
deadline and breaker still apply), publishes each result in the trace of its request,
and marks the call done. A call still pending when the process stops, or crashes, is
run again at the next start: side-effecting tools send the call's idempotency key, so
the backend performs the effect once, and consumers deduplicate results by call id.

Memory is bounded: at most ``max_in_flight`` calls run at once, pending calls are
claimed in pages of ``batch_size``, and done calls are pruned after ``retention_s``.

Several instances share one inbox on Postgres (``PACTMESH_POSTGRES_URL``): whichever
dispatcher claims a pending call runs it, under a lease it renews every third of
``lease_s`` while the call runs, and gives back when it stops. So after a rebalance a
call recorded by one instance runs once, wherever; and a call whose instance died runs
on another once the lease has passed (at least once: the idempotency key keeps the side
effect single). Besides being woken by its handler, a dispatcher claims every third of
a lease, so calls recorded elsewhere or left by a dead instance are not left waiting.

Written here rather than taken from PyPI. python-eventflow's inbox consumes Redis
Streams through SQLAlchemy; omni-box's Kafka inbox runner stores only in PostgreSQL and
needs Python 3.12; event-outbox calls itself not production ready. None sits behind a
FastStream subscriber, whose commit-after-handler and dead-lettering the mesh relies
on, and none stores in SQLite. What is needed is one table, five statements and the
loop below.

Part of the domain: it does no I/O of its own (the inbox and the result publisher are
Protocols the adapters and the kit implement), unlike delivery's webhook dispatcher.

For the benchmark (10,000 workflows waiting on a tool at once) set
``PACTMESH_TOOLS_CONCURRENCY=10000``: the default of 16 requests per backend would
queue the rest behind a slow backend until their deadlines pass. Each backend's HTTP
connection pool follows that limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import AuditToolCalled, ToolCallRequested
from pactmesh_contracts.topics import TOOL_CALLS
from pactmesh_kit.provenance import RequestNotReadYet
from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE

from pactmesh_tools.domain.access import RequestCheck, ToolAccess, refusal_events, refusal_of
from pactmesh_tools.domain.inbox import DispatchLimits, Inbox, PendingCall
from pactmesh_tools.domain.registry import OnBehalf, Outcome, ToolRegistry

logger = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()
_PUBLISH_BACKOFF_MAX_S = 5.0
_READY_POLL_S = 0.05


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, if there is one."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def trace_context(traceparent: str | None) -> Context:
    """The context a ``traceparent`` names (an empty one, so a new trace, if none)."""
    return _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else Context()


class ResultPublisher(Protocol):
    """Publishes a result event (``pactmesh_kit.kafka.EventPublisher`` does)."""

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish ``event`` on the topic its payload belongs to."""
        ...


class Dispatcher:
    """Runs the inbox's pending calls and answers each on the results topic."""

    def __init__(
        self,
        *,
        registry: ToolRegistry,
        access: ToolAccess,
        requests: RequestCheck,
        publisher: ResultPublisher,
        limits: DispatchLimits,
        tracer: trace.Tracer | None = None,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        """``access`` is the access policy every call is checked against before it runs,
        ``requests`` what checks it acts for its request as accepted; ``ready`` says when
        results can be published (the broker has started)."""
        self._registry = registry
        self._access = access
        self._requests = requests
        self._publisher = publisher
        self._limits = limits
        self._tracer = tracer or trace.get_tracer(__name__)
        self._ready = ready
        self._inbox: Inbox | None = None
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._answered: list[uuid.UUID] = []
        self._wakeup = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Calls running now."""
        return len(self._running)

    async def enqueue(self, event: Envelope[ToolCallRequested]) -> bool:
        """Record the call durably in the inbox, in the current trace, and wake the
        dispatcher; ``False`` when the call is already there (a redelivery)."""
        if self._inbox is None:
            raise RuntimeError("the tools inbox is not open")
        recorded = await self._inbox.record(
            call_id=event.payload.call_id,
            envelope=event.model_dump_json(),
            traceparent=current_traceparent(),
        )
        if recorded:
            self._wakeup.set()
        return recorded

    @asynccontextmanager
    async def running(self, inbox: Inbox) -> AsyncIterator[None]:
        """Dispatch from ``inbox`` until exit, starting with the calls already pending.

        On exit running calls are cancelled and stay pending, their leases given back:
        they run at the next start, or at once on another instance sharing the inbox.
        """
        self._inbox, self._wakeup = inbox, asyncio.Event()
        loop = asyncio.create_task(self._loop(inbox), name="tools-dispatcher")
        try:
            yield
        finally:
            self._inbox = None
            loop.cancel()
            cut = list(self._running)
            calls = list(self._running.values())
            for call in calls:
                call.cancel()
            await asyncio.gather(loop, *calls, return_exceptions=True)
            await self._flush(inbox)
            await inbox.renew(cut, lease_s=0)

    async def _loop(self, inbox: Inbox) -> None:
        while not self._ready():  # noqa: ASYNC110 - the broker has a flag, not an event
            await asyncio.sleep(_READY_POLL_S)
        clock = asyncio.get_running_loop().time
        tick = self._limits.lease_s / 3
        next_prune = next_tick = 0.0
        while True:
            self._wakeup.clear()
            try:
                await self._flush(inbox)
                if clock() >= next_tick:
                    await inbox.renew(list(self._running), lease_s=self._limits.lease_s)
                    next_tick = clock() + tick
                await self._fill(inbox)
                if clock() >= next_prune:
                    await self._prune(inbox)
                    next_prune = clock() + self._limits.prune_interval_s
            except Exception:
                logger.exception("tools dispatcher: inbox access failed; retrying")
                await asyncio.sleep(1.0)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(next_prune, next_tick) - clock())):
                    await self._wakeup.wait()

    async def _flush(self, inbox: Inbox) -> None:
        """Mark answered calls done, all in one transaction."""
        answered, self._answered = self._answered, []
        if not answered:
            return
        try:
            await inbox.finish(answered)
        except BaseException:
            self._answered[:0] = answered
            raise

    async def _fill(self, inbox: Inbox) -> None:
        """Claim and start pending calls, a page at a time, until the in-flight cap is
        reached (a call already running here, whose lease was taken again, runs once)."""
        while (room := self._limits.max_in_flight - len(self._running)) > 0:
            page = min(room, self._limits.batch_size)
            calls = await inbox.claim(limit=page, lease_s=self._limits.lease_s)
            for call in calls:
                if call.call_id not in self._running:
                    self._start(call)
            if len(calls) < page:
                return

    async def _prune(self, inbox: Inbox) -> None:
        pruned = await inbox.prune(older_than_s=self._limits.retention_s)
        if pruned:
            logger.info("pruned %d answered tool call(s) from the inbox", pruned)

    def _start(self, call: PendingCall) -> None:
        task = asyncio.create_task(self._run(call), name=f"tool-call-{call.call_id}")
        self._running[call.call_id] = task
        task.add_done_callback(lambda done: self._ended(call, done))

    def _ended(self, call: PendingCall, task: asyncio.Task[None]) -> None:
        del self._running[call.call_id]
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error(
                "tool call %s could not be run; it stays pending until its lease ends",
                call.call_id,
                exc_info=exc,
            )
        self._wakeup.set()

    async def _run(self, call: PendingCall) -> None:
        """Run one call and publish its result, in the trace of the request."""
        event: Envelope[ToolCallRequested] = TOOL_CALLS.adapter.validate_json(call.envelope)
        request = event.payload
        attributes = {
            WORKFLOW_ID_ATTRIBUTE: str(event.workflow_id),
            "pactmesh.tool.call_id": str(request.call_id),
        }
        with self._tracer.start_as_current_span(
            f"dispatch {request.tool}",
            context=trace_context(call.traceparent),
            attributes=attributes,
        ) as span:
            try:
                reason = await refusal_of(
                    access=self._access, requests=self._requests, request=event
                )
            except RequestNotReadYet as exc:
                # Not refused: the service has not read every accepted request yet (an
                # instance of it killed, a backlog). Left pending, the call is claimed
                # again when its lease ends.
                logger.warning(
                    "tool call %s waits for its request, tried again in %gs: %s",
                    request.call_id,
                    self._limits.lease_s,
                    exc,
                )
                span.add_event("tool.call.deferred", {"pactmesh.reason": str(exc)})
                return
            if reason is not None:
                await self._refuse(event, reason, span)
                self._answered.append(call.call_id)
                return
            outcome = await self._registry.invoke(
                tool=request.tool,
                arguments=dict(request.arguments),
                idempotency_key=request.idempotency_key,
                timeout_s=request.timeout_s,
                on_behalf=OnBehalf(tenant=event.tenant, principal=event.principal.subject),
                call_id=str(request.call_id),
            )
            if not outcome.ok:
                logger.warning(
                    "%s failed: %s %s", request.tool, outcome.error_code, outcome.message[:200]
                )
            # The audit record is dated before the result leaves, so the timeline orders the
            # call before whatever the result sets off.
            audit = event.follow(self._audit(request, outcome))
            await self._publish(
                event.follow(outcome.to_event(call_id=call.call_id, tool=request.tool))
            )
            await self._publish(audit)
        self._answered.append(call.call_id)

    def _audit(self, request: ToolCallRequested, outcome: Outcome) -> AuditToolCalled:
        """The timeline's record of the call, sensitive fields redacted."""
        arguments, result = self._registry.redacted(
            request.tool, dict(request.arguments), outcome.result
        )
        return AuditToolCalled(
            call_id=request.call_id,
            tool=request.tool,
            arguments=arguments,
            ok=outcome.ok,
            result=result,
            error_code=outcome.error_code,
            message=outcome.message[:4000],
            attempts=outcome.attempts,
            duration_ms=outcome.duration_ms,
        )

    async def _refuse(
        self, event: Envelope[ToolCallRequested], reason: str, span: trace.Span
    ) -> None:
        """Answer a call the access policy refuses, and audit it; the tool never runs.

        Checked here, once the call is durable in the inbox, rather than in the Kafka
        handler: a redelivered forged call is then recognised and not audited twice, and
        a crash before the answer is published checks it again at the next start.
        """
        request = event.payload
        logger.warning(
            "refused %s for workflow %s, principal %s, tenant %s (call %s): %s",
            request.tool,
            request.workflow,
            event.principal.subject,
            event.tenant,
            request.call_id,
            reason,
        )
        span.add_event(
            "tool.call.refused",
            {"pactmesh.tool": request.tool, "pactmesh.reason": reason},
        )
        span.set_status(trace.StatusCode.ERROR, reason)
        for answer in refusal_events(request=event, reason=reason):
            await self._publish(answer)

    async def _publish(self, result: Envelope[Any]) -> None:
        """Publish, retrying with backoff while Kafka refuses (the call is not re-run)."""
        pause = 0.1
        while True:
            try:
                await self._publisher.publish(result)
                return
            except Exception as exc:
                logger.warning(
                    "publishing %s failed, retrying in %.1fs: %r", result.type, pause, exc
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, _PUBLISH_BACKOFF_MAX_S)
