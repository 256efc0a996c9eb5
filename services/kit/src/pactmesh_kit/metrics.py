"""Metrics: one OpenTelemetry meter provider per service, read by Prometheus on ``/metrics``.

OpenTelemetry's Prometheus exporter (``opentelemetry-exporter-prometheus``) turns the
service's instruments into the Prometheus text format when scraped: nothing is exported
between scrapes, so recording a measurement costs an in-memory aggregation. Each service
keeps its own ``CollectorRegistry`` (not prometheus_client's global one), so tests that
build several services in one process do not see each other's metrics.

``/metrics`` is public unless ``PACTMESH_METRICS_TOKEN`` is set; then it answers only a
bearer token equal to it (Prometheus' ``authorization: {credentials_file: ...}``). The
metrics carry no tenant's data: labels are topics, groups, partitions, workflows,
models, tools and backends, states and reasons.
"""

from __future__ import annotations

import hmac
import os
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pactmesh_kit.settings import KitSettings

METER = "pactmesh"

FAMILIES: dict[str, tuple[str, ...]] = {
    "every service": (
        "messaging_process_duration_seconds",  # handler rate, errors, duration per topic
        "messaging_kafka_consumer_lag",  # per group and partition
        "pactmesh_dead_letters_total",  # by reason (appears with the first dead letter)
    ),
    "routing and orchestrator": (
        "gen_ai_client_operation_duration_seconds",  # model calls and latency per model
        "gen_ai_client_token_usage",  # tokens per model, input and output
        "pactmesh_gen_ai_cost_total",  # spend per model (a model with a price)
    ),
    "orchestrator": (
        "pactmesh_workflow_transitions_total",  # workflows entering each state
        "pactmesh_cache_lookups_total",  # semantic cache hits and misses
    ),
    "tools": (
        "gen_ai_execute_tool_duration_seconds",  # tool calls, latency per tool and backend
        "pactmesh_tool_breaker_state",  # 0 closed, 1 half-open, 2 open
    ),
    "hitl": ("pactmesh_reviews_open",),  # waiting reviews by priority and age
}
"""The Prometheus families the mesh exports (OpenTelemetry's names, translated), by who
exports them: the Grafana dashboard uses no other, and the mesh test scrapes them."""


class Metrics:
    """A service's meter provider and the registry ``/metrics`` renders."""

    def __init__(self, settings: KitSettings) -> None:
        name = os.environ.get("OTEL_SERVICE_NAME") or settings.service_name
        self.registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(disable_target_info=True, registry=self.registry)
        self.provider: metrics.MeterProvider = MeterProvider(
            resource=Resource.create({SERVICE_NAME: name}), metric_readers=[reader]
        )
        if not settings.metrics_enabled:
            self.provider = metrics.NoOpMeterProvider()
        self.meter: Meter = self.provider.get_meter(METER)

    def render(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)


def metrics_router(metrics: Metrics, token: str | None) -> APIRouter:
    """``GET /metrics`` (outside the OpenAPI document, like the AsyncAPI routes)."""
    api = APIRouter(tags=["metrics"], include_in_schema=False)
    expected = f"Bearer {token}".encode() if token else None

    @api.get("/metrics")
    async def scrape(
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        if expected is not None and not hmac.compare_digest(
            (authorization or "").encode(), expected
        ):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "metrics need the scrape token",
                {"WWW-Authenticate": "Bearer"},
            )
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return api
