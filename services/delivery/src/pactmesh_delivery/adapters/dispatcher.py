"""The webhook dispatcher: works through the outbox, one signed POST per attempt.

One asyncio task for the life of the app. It claims due deliveries (at most
``concurrency`` in flight), POSTs each, and records the outcome; a failed attempt is
rescheduled by writing its ``next_attempt_at``, so no coroutine sleeps through a
backoff and a restart resumes every pending delivery. After the last attempt a
dead-letter record goes to the dead-letter topic, then the delivery is marked dead.

An adapter: it POSTs to the receivers itself (the schedule and what a failure means are
the domain's, in ``domain.webhooks``), unlike the tools service's dispatcher.

A delivery is marked delivered in one statement after a 2xx. A crash between the
receiver's 2xx and that mark sends it again after restart (at-least-once is inherent
to HTTP): receivers deduplicate on ``Pactmesh-Delivery``, the same on every attempt.

Several instances dispatch from one outbox (Postgres): each claim leases its deliveries
for the attempt's timeout plus a margin, and an attempt is only started while its whole
timeout still fits in the lease, so a delivery is never POSTed by two instances at once
(one that stalled past its lease leaves the delivery to the next claim).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial

import httpx
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode, Tracer
from pactmesh_contracts.events import DeadLetter
from pactmesh_contracts.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE
from pydantic import JsonValue

from pactmesh_delivery.adapters.egress import EgressRefused
from pactmesh_delivery.domain.egress import redact_url
from pactmesh_delivery.domain.webhooks import (
    DueDelivery,
    Outbox,
    RetryPolicy,
    describe_failure,
)

logger = logging.getLogger(__name__)

DeadLetterSink = Callable[[DeadLetter, bytes | None], Awaitable[None]]
"""Publishes a dead-letter record (with its Kafka key) and waits for the broker's ack."""

_DEAD_LETTER_NAMESPACE = uuid.UUID("5d0c7a52-3f53-4a43-9a55-0f7c2d7f1e08")
_SIZE_CAP = 65_536
"""Bytes of a refusing receiver's answer counted (never kept); a larger one is
recorded as more than this."""
_NO_SECRET = "the webhook's signing secret cannot be decrypted with the configured keys"


@dataclass(frozen=True)
class Attempt:
    """What one POST came to."""

    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        """A 2xx answer: the receiver has the result."""
        return self.status is not None and 200 <= self.status < 300


class Dispatcher:
    """Delivers queued webhook deliveries with bounded concurrency."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        client: httpx.AsyncClient,
        dead_letters: DeadLetterSink,
        policy: RetryPolicy,
        service: str,
        tracer: Tracer | None = None,
        concurrency: int = 8,
        tenant_concurrency: int | None = None,
        poll_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._dead_letters = dead_letters
        self._policy = policy
        self._service = service
        self._tracer = tracer or trace.get_tracer(__name__)
        self._concurrency = concurrency
        self._tenant_concurrency = tenant_concurrency
        self._busy: Counter[str] = Counter()
        """Attempts in flight per tenant."""
        self._poll_s = poll_interval_s
        self._clock = clock
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Look at the outbox now (something was queued), not at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Dispatch until cancelled."""
        while True:
            self._wake.clear()
            try:
                await self.dispatch_due()
                pause = await self._pause()
            except Exception:
                logger.exception("webhook dispatch pass failed; retrying")
                pause = self._poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def dispatch_due(self) -> int:
        """Start an attempt for every due delivery there is a free slot for."""
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return 0
        now = self._clock()
        lease_until = now + self._policy.lease_s
        claimed = await self._outbox.claim_due(
            now=now,
            lease_until=lease_until,
            limit=free,
            max_attempts=self._policy.max_attempts,
            per_tenant=self._tenant_concurrency,
            busy={tenant: n for tenant, n in self._busy.items() if n},
        )
        for delivery in claimed:
            tenant = delivery.result.tenant
            self._busy[tenant] += 1
            task = asyncio.create_task(
                self._settle(delivery, lease_until), name=f"webhook-{delivery.id}"
            )
            self._inflight.add(task)
            task.add_done_callback(partial(self._finished, tenant))
        return len(claimed)

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for attempts in flight, then cancel the rest (their
        leases expire and they are tried again after a restart)."""
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _finished(self, tenant: str, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._busy[tenant] -= 1
        if self._busy[tenant] <= 0:
            del self._busy[tenant]
        self._wake.set()  # a slot is free

    async def _pause(self) -> float:
        """Until the next delivery falls due, within one poll interval."""
        if len(self._inflight) >= self._concurrency:
            return self._poll_s
        due = await self._outbox.next_due_at()
        if due is None:
            return self._poll_s
        return min(self._poll_s, max(0.01, due - self._clock()))

    async def _settle(self, delivery: DueDelivery, lease_until: float) -> None:
        try:
            if not delivery.attempt_counted:
                await self._dead_letter(delivery)
                return
            if self._clock() + self._policy.attempt_timeout_s > lease_until:
                logger.warning(
                    "webhook delivery %s: its lease ran short; left for later", delivery.id
                )
                return
            attempt = await self.attempt(delivery)
            await self._record(delivery, attempt)
        except Exception:
            # The lease runs out and the delivery is due again: nothing is lost.
            logger.exception("webhook delivery %s: recording its outcome failed", delivery.id)

    async def _record(self, delivery: DueDelivery, attempt: Attempt) -> None:
        now = self._clock()
        if attempt.ok:
            assert attempt.status is not None
            await self._outbox.mark_delivered(delivery.id, status=attempt.status, now=now)
            return
        error = describe_failure(attempt.status, attempt.error)
        if not self._policy.exhausted(delivery.attempts):
            retry_at = now + self._policy.delay_after(delivery.attempts)
            logger.info(
                "webhook delivery %s attempt %d failed (%s); next in %.2fs",
                delivery.id,
                delivery.attempts,
                error,
                retry_at - now,
            )
            await self._outbox.mark_failed(
                delivery.id, status=attempt.status, error=error, next_attempt_at=retry_at, now=now
            )
            return
        # Recorded before dead-lettering, due again after a lease: if the dead-letter
        # topic cannot be reached, the next claim dead-letters (it no longer POSTs).
        await self._outbox.mark_failed(
            delivery.id,
            status=attempt.status,
            error=error,
            next_attempt_at=now + self._policy.lease_s,
            now=now,
        )
        await self._dead_letter(replace(delivery, last_status=attempt.status, last_error=error))

    async def attempt(self, delivery: DueDelivery) -> Attempt:
        """POST the result once, signed, within the attempt timeout; one span."""
        if delivery.secret is None:
            return Attempt(None, _NO_SECRET)
        body = delivery.result.body
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(delivery.secret, body, timestamp=int(self._clock())),
            DELIVERY_HEADER: str(delivery.id),
            EVENT_HEADER: str(delivery.result.result_event_id),
        }
        with self._tracer.start_as_current_span(
            "webhook deliver",
            context=propagate.extract(delivery.result.trace_context),
            attributes={
                WORKFLOW_ID_ATTRIBUTE: str(delivery.result.workflow_id),
                "pactmesh.webhook.id": str(delivery.webhook_id),
                "pactmesh.webhook.delivery_id": str(delivery.id),
                "pactmesh.webhook.attempt": delivery.attempts,
            },
        ) as span:
            attempt = await self._post(delivery.url, body, headers)
            if attempt.status is not None:
                span.set_attribute("http.response.status_code", attempt.status)
            if not attempt.ok:
                span.set_status(Status(StatusCode.ERROR, describe_failure(attempt.status, None)))
            return attempt

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        try:
            # httpx's timeout bounds each phase; this bounds the whole attempt (a
            # receiver trickling its answer cannot hold a slot past the lease).
            async with asyncio.timeout(self._policy.attempt_timeout_s):
                async with self._client.stream(
                    "POST", url, content=body, headers=headers
                ) as response:
                    if 200 <= response.status_code < 300:
                        return Attempt(response.status_code, None)
                    return Attempt(response.status_code, await _size(response))
        except TimeoutError:
            return Attempt(None, f"timed out after {self._policy.attempt_timeout_s}s")
        except EgressRefused as exc:
            return Attempt(None, f"refused: {exc}")
        except httpx.HTTPError as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    async def _dead_letter(self, delivery: DueDelivery) -> None:
        letter = dead_letter_for(delivery, service=self._service)
        try:
            await self._dead_letters(letter, delivery.result.key)
        except Exception:
            logger.exception("webhook delivery %s: dead-lettering failed, will retry", delivery.id)
            return
        logger.warning("webhook delivery %s dead-lettered: %s", delivery.id, letter.error)
        await self._outbox.mark_dead(delivery.id, now=self._clock())


async def _size(response: httpx.Response) -> str:
    """How large a refusing receiver's answer is, never what it says (read up to
    :data:`_SIZE_CAP` and dropped)."""
    read = 0
    async for chunk in response.aiter_bytes():
        read += len(chunk)
        if read > _SIZE_CAP:
            return f"more than {_SIZE_CAP} bytes"
    return f"{read} bytes"


def dead_letter_for(delivery: DueDelivery, *, service: str) -> DeadLetter:
    """The dead-letter record of a delivery whose every attempt failed: the result
    record's exact bytes and position, and why (last status or error, attempts).

    Its id derives from the delivery's, so a record published twice (a crash between
    publishing it and marking the delivery dead) is recognisably the same.
    """
    result = delivery.result
    reason = delivery.last_error or describe_failure(delivery.last_status, None)
    detail: dict[str, JsonValue] = {
        "type": "webhook_delivery_failed",
        "webhook_id": str(delivery.webhook_id),
        "delivery_id": str(delivery.id),
        "url": redact_url(delivery.url),
        "result_event_id": str(result.result_event_id),
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
    }
    return DeadLetter(
        dead_letter_id=uuid.uuid5(_DEAD_LETTER_NAMESPACE, str(delivery.id)),
        service=service,
        consumer_group=None,
        source_topic=result.source_topic,
        source_partition=result.source_partition,
        source_offset=result.source_offset,
        original_key_b64=None if result.key is None else base64.b64encode(result.key).decode(),
        original_value_b64=base64.b64encode(result.body).decode(),
        original_headers=result.headers,
        error_code="refused",
        error=(
            f"webhook {delivery.webhook_id} ({redact_url(delivery.url)}) did not accept the"
            f" result after {delivery.attempts} attempts; last: {reason}"
        ),
        errors=[detail],
    )
