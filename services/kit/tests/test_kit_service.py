"""What the app builder (``pactmesh_kit.app.Service``) gives every service: the lifespan
order (waiting for resources and Kafka at start-up, draining Kafka at shutdown), health
(not ready while partitions are stalled) and AsyncAPI, authentication by default, errors
answered by kind, and encodable 422s."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from pactmesh_kit import lifecycle
from pactmesh_kit.app import Service
from pactmesh_kit.auth.http import Authenticator
from pactmesh_kit.auth.testing import bearer
from pactmesh_kit.errors import NotReady, PactmeshError
from pactmesh_kit.kafka import Stall
from pactmesh_kit.settings import KitSettings
from pactmesh_kit.stores import InstanceLocked, StoreSettings, instance_lock
from pydantic import BaseModel


class Body(BaseModel):
    count: int


class Gone(PactmeshError):
    code = "thing_gone"
    kind = "not_found"


class Broken(PactmeshError):
    code = "thing_broken"


def _service(tmp_path: Path) -> Service:
    settings = KitSettings(data_dir=tmp_path, topic_prefix="kit-app-test.")
    return Service(settings, title="t", description="d", tracer_provider=TracerProvider())


def _app(tmp_path: Path, **options: Any) -> FastAPI:
    router = APIRouter()

    @router.post("/things")
    async def things(body: Body) -> dict[str, int]:
        return {"count": body.count}

    @router.get("/gone")
    async def gone() -> None:
        raise Gone("no thing 7")

    @router.get("/broken")
    async def broken() -> None:
        raise Broken("the database password is hunter2")

    @router.get("/not-ready")
    async def not_ready() -> None:
        raise NotReady("the store is not open")

    public = APIRouter()

    @public.get("/open")
    async def opened() -> dict[str, str]:
        return {"open": "yes"}

    app = _service(tmp_path).app(object(), routers=[router], public=[public], **options)
    assert isinstance(app.state.authenticator, Authenticator)
    return app


def _token(tmp_path: Path) -> dict[str, str]:
    return bearer(KitSettings(data_dir=tmp_path))


def test_a_field_error_echoing_an_unpaired_surrogate_is_a_422_not_a_500(tmp_path: Path) -> None:
    client = TestClient(_app(tmp_path))  # no lifespan: the broker is never started
    response = client.post(
        "/things",
        content=b'{"count": "\\ud800"}',
        headers={"content-type": "application/json", **_token(tmp_path)},
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "count"]
    assert error["input"] == "\ud800"


def test_ordinary_field_errors_keep_fastapis_shape(tmp_path: Path) -> None:
    client = TestClient(_app(tmp_path))
    response = client.post("/things", json={"count": "many"}, headers=_token(tmp_path))
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "int_parsing"


def test_routes_need_a_token_unless_public(tmp_path: Path) -> None:
    client = TestClient(_app(tmp_path))
    assert client.post("/things", json={"count": 1}).status_code == 401
    assert client.post("/things", json={"count": 1}, headers=_token(tmp_path)).json() == {
        "count": 1
    }
    assert client.get("/open").json() == {"open": "yes"}
    assert client.get("/health/live").json() == {"status": "ok"}
    assert client.get("/asyncapi.json").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


def test_pactmesh_errors_are_answered_by_their_kind(tmp_path: Path) -> None:
    client = TestClient(_app(tmp_path))
    auth = _token(tmp_path)
    gone = client.get("/gone", headers=auth)
    assert (gone.status_code, gone.json()) == (404, {"detail": "no thing 7"})
    not_ready = client.get("/not-ready", headers=auth)
    assert (not_ready.status_code, not_ready.json()) == (503, {"detail": "the store is not open"})
    broken = client.get("/broken", headers=auth)
    assert broken.status_code == 500
    assert broken.json() == {"detail": "internal error (thing_broken)"}


async def test_resources_open_before_the_broker_starts_and_close_after_it_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []

    def resource(name: str) -> Any:
        @asynccontextmanager
        async def held() -> AsyncIterator[None]:
            events.append(f"open {name}")
            yield
            events.append(f"close {name}")

        return held

    service = _service(tmp_path)

    async def start() -> None:
        events.append("broker started")

    async def stop(*_args: Any) -> None:
        events.append("broker stopped")

    monkeypatch.setattr(lifecycle, "reachable", _answers)
    monkeypatch.setattr(service.kafka.broker, "start", start)
    monkeypatch.setattr(service.kafka.broker, "stop", stop)
    monkeypatch.setattr(lifecycle.collector, "ready", lambda: events.append("frozen") or 0)
    app = service.app(object(), resources=[resource("store"), resource("worker")])
    async with app.router.lifespan_context(app):
        events.append("serving")

    assert events == [
        "open store",
        "open worker",
        "broker started",
        "frozen",
        "serving",
        "broker stopped",
        "close worker",
        "close store",
    ]


async def test_start_up_waits_for_its_resources_and_kafka_saying_what_it_waits_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lifecycle, "BACKOFF_INITIAL_S", 0.01)
    events: list[str] = []
    refusals = iter([ConnectionRefusedError("postgres down")] * 2)

    @asynccontextmanager
    async def _store() -> AsyncIterator[None]:
        if (refusal := next(refusals, None)) is not None:
            raise refusal
        events.append("open store")
        yield

    service = _service(tmp_path)
    probes = iter([ConnectionError("no broker at 127.0.0.1:9092"), None])

    async def probe(_settings: KitSettings) -> None:
        if (refusal := next(probes)) is not None:
            raise refusal

    monkeypatch.setattr(lifecycle, "reachable", probe)
    broker_down = iter([True, True, False])

    async def start() -> None:
        if next(broker_down):
            raise ConnectionError("no broker at 127.0.0.1:9092")
        events.append("broker started")

    async def stop(*_args: Any) -> None:
        events.append("broker stopped")

    async def drain() -> None:
        events.append("drained")

    monkeypatch.setattr(service.kafka.broker, "start", start)
    monkeypatch.setattr(service.kafka.broker, "stop", stop)
    monkeypatch.setattr(service.kafka, "drain", drain)
    app = service.app(object(), resources=[_store])
    with caplog.at_level(logging.WARNING, logger="pactmesh_kit.app"):
        async with app.router.lifespan_context(app):
            events.append("serving")

    # each failed broker start is cleaned up (stopped) before the next attempt
    assert events == [
        "open store",
        "broker stopped",
        "broker stopped",
        "broker started",
        "serving",
        "drained",
        "broker stopped",
    ]
    waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waits) == 5
    assert waits[0].startswith("pactmesh: waiting for store (attempt 1: ConnectionRefusedError")
    assert "waiting for Kafka at 127.0.0.1:9092 (attempt 1: ConnectionError" in waits[2]
    assert "waiting for Kafka at 127.0.0.1:9092 (attempt 2: ConnectionError" in waits[4]


async def test_start_up_gives_up_after_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "BACKOFF_INITIAL_S", 0.01)
    settings = KitSettings(data_dir=tmp_path, topic_prefix="t.", startup_timeout_s=0.1)
    service = Service(settings, title="t", description="d", tracer_provider=TracerProvider())

    @asynccontextmanager
    async def never() -> AsyncIterator[None]:
        raise ConnectionRefusedError("postgres down")
        yield  # pragma: no cover

    app = service.app(object(), resources=[never])
    with pytest.raises(ConnectionRefusedError):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover


async def test_start_up_refuses_at_once_what_waiting_cannot_cure(tmp_path: Path) -> None:
    """A second instance on a data dir another one holds stops at once, saying why,
    instead of waiting out its start-up timeout (the holder runs on)."""
    settings = StoreSettings(data_dir=tmp_path, topic_prefix="t.", startup_timeout_s=600)
    service = Service(settings, title="t", description="d", tracer_provider=TracerProvider())
    app = service.app(object(), resources=[partial(instance_lock, settings)])
    started = time.monotonic()
    async with instance_lock(settings):
        with pytest.raises(InstanceLocked):
            async with app.router.lifespan_context(app):
                pass  # pragma: no cover
    assert time.monotonic() - started < 5


async def _answers(_settings: KitSettings) -> None:
    """Kafka answers the start-up probe."""


def test_readiness_reports_stalled_partitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(tmp_path)
    stall = Stall(
        topic="p.tool.results",
        partition=3,
        offset=41,
        event_id="0190-abc",
        since=time.monotonic() - 12,
        attempts=7,
        error="OperationalError: connection refused",
    )
    monkeypatch.setattr(service.kafka, "stalls", lambda: [stall])
    client = TestClient(service.app(object()))
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "stalled"
    [reported] = body["stalled"]
    assert {k: reported[k] for k in ("topic", "partition", "offset", "event_id", "attempts")} == {
        "topic": "p.tool.results",
        "partition": 3,
        "offset": 41,
        "event_id": "0190-abc",
        "attempts": 7,
    }
    assert reported["stalled_s"] >= 12
    assert client.get("/health/live").status_code == 200


@pytest.mark.parametrize(("grace", "phase"), [(None, 10), ("45", 15)])
def test_the_shutdown_grace_is_shared_by_http_and_the_kafka_handlers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, grace: str | None, phase: int
) -> None:
    import uvicorn
    from pactmesh_kit.app import serve

    if grace is not None:
        monkeypatch.setenv("PACTMESH_SHUTDOWN_GRACE_S", grace)
    settings = KitSettings(data_dir=tmp_path)
    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(options))
    monkeypatch.setattr("pactmesh_kit.app.setup_logging", lambda: None)
    # This process is not a service: its collector is left alone.
    monkeypatch.setattr("pactmesh_kit.app.collector.configure", lambda t: ran.update(gc=t))
    serve("some.module:create_app", settings, port=1)
    assert ran["timeout_graceful_shutdown"] == phase
    assert ran["gc"] == settings.gc_thresholds
    service = Service(settings, title="t", description="d", tracer_provider=TracerProvider())
    assert service.kafka.broker.config.graceful_timeout == phase
