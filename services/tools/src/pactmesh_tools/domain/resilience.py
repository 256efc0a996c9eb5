"""Protecting backends and callers from each other: a circuit breaker and a concurrency
limit per backend, and a timeout per attempt.

The breaker is written here rather than taken from PyPI. Of the asyncio breakers there,
aiobreaker (last release 2021) and aiocircuitbreaker (2022) are unmaintained, pybreaker
does async only through Tornado, and purgatory, the maintained one, reads the wall clock
(``time.time``, so a clock step opens or closes circuits), lets every concurrent caller
through while half-open (a herd onto a backend that is still recovering) and routes each
call through a message bus and unit of work. The state machine needed is about forty
lines, with an injectable monotonic clock so tests need not sleep out a cooldown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from pactmesh_contracts.events import ToolErrorCode

from pactmesh_tools.domain.errors import CircuitOpenError, ToolError, TransientError

T = TypeVar("T")
Clock = Callable[[], float]


class BreakerState(StrEnum):
    """Closed: calls pass. Open: calls fail fast. Half-open: one trial call passes."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; after ``cooldown_s`` lets one trial
    call through, whose success closes it and whose failure opens it again."""

    def __init__(self, *, threshold: int, cooldown_s: float, clock: Clock = time.monotonic):
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        """Consecutive failures (reset by any success)."""
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker becomes half-open once its cooldown passed)."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets a trial call through."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_s - self._clock())

    def admit(self, backend: str) -> None:
        """Let a call through, or raise ``CircuitOpenError``. In half-open, only the one
        trial call passes until it has an outcome."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return
        raise CircuitOpenError(backend, self.retry_in_s())

    def succeeded(self) -> None:
        """The backend answered: close."""
        self.failures = 0
        self._opened_at = None
        self._trial_running = False

    def failed(self) -> None:
        """The backend failed: count, and open at the threshold (or on a failed trial)."""
        self.failures += 1
        if self._trial_running or self.failures >= self.threshold:
            self._opened_at = self._clock()
        self._trial_running = False

    def abandoned(self) -> None:
        """The call ended without telling anything about the backend (cancelled)."""
        self._trial_running = False


@dataclass(frozen=True)
class BackendLimits:
    """How one backend is protected."""

    concurrency: int
    """Calls in flight at once; more wait for a slot (within their deadline)."""
    breaker_threshold: int
    breaker_cooldown_s: float


@dataclass
class CallContext:
    """What one attempt of a tool call knows beyond its arguments."""

    idempotency_key: str
    """Sent with side effects, so a retried or replayed call does not repeat them."""
    attempt_timeout_s: float
    """How long one backend request of this attempt may take."""
    tenant: str
    """The tenant the call acts for (from the tool call's envelope): backends show and
    change only its data."""
    principal: str
    """The subject the call acts for (from the tool call's envelope)."""
    requests: int = 0
    """Backend requests this attempt actually sent (a breaker's refusal sends none)."""


class BackendGuard:
    """One backend's concurrency limit and circuit breaker, applied to each request."""

    def __init__(self, name: str, limits: BackendLimits, *, clock: Clock = time.monotonic):
        self.name = name
        self.limits = limits
        self.breaker = CircuitBreaker(
            threshold=limits.breaker_threshold, cooldown_s=limits.breaker_cooldown_s, clock=clock
        )
        self._slots = asyncio.Semaphore(limits.concurrency)
        self.in_flight = 0

    async def call(self, request: Callable[[], Awaitable[T]], *, ctx: CallContext) -> T:
        """Run one backend request: wait for a slot, ask the breaker, bound it in time.

        Waiting for a slot is not part of the attempt's timeout: a queue in front of a
        healthy backend must not read as the backend failing.
        """
        async with self._slots:
            self.breaker.admit(self.name)
            self.in_flight += 1
            ctx.requests += 1
            try:
                async with asyncio.timeout(ctx.attempt_timeout_s):
                    result = await request()
            except TimeoutError as exc:
                self.breaker.failed()
                raise TransientError(
                    ToolErrorCode.TIMEOUT,
                    f"{self.name} did not answer within {ctx.attempt_timeout_s:g}s",
                ) from exc
            except TransientError:
                self.breaker.failed()
                raise
            except ToolError:
                self.breaker.succeeded()  # it answered; the request was at fault
                raise
            except BaseException:
                self.breaker.abandoned()
                raise
            finally:
                self.in_flight -= 1
            self.breaker.succeeded()
            return result

    def describe(self) -> dict[str, object]:
        """The breaker's state and the slots in use, for ``GET /v1/tools/backends``."""
        return {
            "name": self.name,
            "state": self.breaker.state.value,
            "consecutive_failures": self.breaker.failures,
            "retry_in_s": round(self.breaker.retry_in_s(), 3),
            "in_flight": self.in_flight,
            "concurrency_limit": self.limits.concurrency,
            "breaker_threshold": self.limits.breaker_threshold,
            "breaker_cooldown_s": self.limits.breaker_cooldown_s,
        }


class Backends:
    """A guard per backend, made on first use with that backend's limits."""

    def __init__(
        self, limits: Callable[[str], BackendLimits], *, clock: Clock = time.monotonic
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._guards: dict[str, BackendGuard] = {}

    def __getitem__(self, name: str) -> BackendGuard:
        guard = self._guards.get(name)
        if guard is None:
            guard = self._guards[name] = BackendGuard(name, self._limits(name), clock=self._clock)
        return guard

    def describe(self) -> list[dict[str, object]]:
        """Every backend used so far (or declared), by name."""
        return [self._guards[name].describe() for name in sorted(self._guards)]

    def breaker_states(self) -> dict[str, int]:
        """Each backend's breaker as a number for a gauge: 0 closed, 1 half-open, 2 open."""
        code = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
        return {name: code[guard.breaker.state] for name, guard in self._guards.items()}
