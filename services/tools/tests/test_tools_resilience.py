"""The circuit breaker and the per-backend guard, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from pactmesh_contracts.events import ToolErrorCode
from pactmesh_tools.domain.errors import CircuitOpenError, ToolError, TransientError
from pactmesh_tools.domain.resilience import (
    BackendGuard,
    BackendLimits,
    BreakerState,
    CallContext,
    CircuitBreaker,
)


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(threshold=threshold, cooldown_s=10, clock=clock)


def test_opens_after_consecutive_failures_only() -> None:
    breaker = _breaker(Clock())
    breaker.failed()
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    breaker.failed()
    assert breaker.state is BreakerState.CLOSED
    breaker.failed()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError, match=r"retry in 10\.0s"):
        breaker.admit("crm")


def test_half_open_admits_one_trial_whose_success_closes() -> None:
    clock = Clock()
    breaker = _breaker(clock, threshold=1)
    breaker.failed()
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.admit("crm")
    with pytest.raises(CircuitOpenError):
        breaker.admit("crm")
    breaker.succeeded()
    assert (breaker.state, breaker.failures) == (BreakerState.CLOSED, 0)
    breaker.admit("crm")


def test_a_failed_trial_opens_again_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = _breaker(clock, threshold=5)
    for _ in range(5):
        breaker.failed()
    clock.now += 11
    breaker.admit("crm")
    breaker.failed()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in_s() == 10


def test_an_abandoned_trial_frees_the_slot() -> None:
    clock = Clock()
    breaker = _breaker(clock, threshold=1)
    breaker.failed()
    clock.now += 10
    breaker.admit("crm")
    breaker.abandoned()
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.admit("crm")


def _guard(clock: Clock, concurrency: int = 2) -> BackendGuard:
    limits = BackendLimits(concurrency=concurrency, breaker_threshold=2, breaker_cooldown_s=5)
    return BackendGuard("erp", limits, clock=clock)


async def test_the_guard_times_out_an_attempt_and_counts_it() -> None:
    guard = _guard(Clock())
    ctx = CallContext(idempotency_key="k", attempt_timeout_s=0.01, tenant="acme", principal="u")
    with pytest.raises(TransientError, match=r"erp did not answer within 0\.01s") as caught:
        await guard.call(lambda: asyncio.sleep(1), ctx=ctx)
    assert caught.value.code is ToolErrorCode.TIMEOUT
    assert (ctx.requests, guard.breaker.failures) == (1, 1)


async def test_a_refused_request_means_the_backend_is_up() -> None:
    guard = _guard(Clock())
    guard.breaker.failed()

    async def refuse() -> None:
        raise ToolError(ToolErrorCode.BACKEND_ERROR, "404", retryable=False)

    with pytest.raises(ToolError):
        await guard.call(
            refuse,
            ctx=CallContext(idempotency_key="k", attempt_timeout_s=1, tenant="acme", principal="u"),
        )
    assert guard.breaker.failures == 0


async def test_an_open_guard_sends_nothing() -> None:
    guard = _guard(Clock())
    guard.breaker.failed()
    guard.breaker.failed()
    ctx = CallContext(idempotency_key="k", attempt_timeout_s=1, tenant="acme", principal="u")
    with pytest.raises(CircuitOpenError):
        await guard.call(lambda: asyncio.sleep(0), ctx=ctx)
    assert ctx.requests == 0
    assert guard.describe() == {
        "name": "erp",
        "state": "open",
        "consecutive_failures": 2,
        "retry_in_s": 5.0,
        "in_flight": 0,
        "concurrency_limit": 2,
        "breaker_threshold": 2,
        "breaker_cooldown_s": 5,
    }


async def test_the_guard_limits_requests_in_flight() -> None:
    guard = _guard(Clock(), concurrency=3)
    peak = 0

    async def request() -> None:
        nonlocal peak
        peak = max(peak, guard.in_flight)
        await asyncio.sleep(0.01)

    ctx = CallContext(idempotency_key="k", attempt_timeout_s=1, tenant="acme", principal="u")
    await asyncio.gather(*(guard.call(request, ctx=ctx) for _ in range(10)))
    assert (peak, guard.in_flight, ctx.requests) == (3, 0, 10)
