"""Settings every service shares; each service subclasses them with its own fields."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class KitSettings(BaseSettings):
    """Shared settings. Fields read fixed environment variables whatever the service's
    own prefix, so one environment configures the whole mesh."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    service_name: str = "pactmesh"
    """The service's identity: names its consumer groups and its trace file. Fixed per
    service (not read from the environment) so two services never share a group."""
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=_alias("KAFKA_BOOTSTRAP_SERVERS", "PACTMESH_KAFKA_BOOTSTRAP_SERVERS"),
    )
    """Comma-separated ``host:port`` list; set it to use an external cluster."""
    topic_prefix: str = Field("pactmesh.", validation_alias=_alias("PACTMESH_TOPIC_PREFIX"))
    """Prepended to every logical topic name (tests use a fresh prefix each)."""
    data_dir: Path = Field(Path(".cache/run"), validation_alias=_alias("PACTMESH_DATA_DIR"))
    """Where SQLite files and local trace files live."""
    http_host: str = Field("127.0.0.1", validation_alias=_alias("PACTMESH_HTTP_HOST"))
    default_tenant: str = Field("default", validation_alias=_alias("PACTMESH_DEFAULT_TENANT"))
    """Tenant of requests that do not name one, until authentication lands."""
    handler_max_attempts: int = Field(
        5, ge=1, validation_alias=_alias("PACTMESH_HANDLER_MAX_ATTEMPTS")
    )
    """Attempts at a message whose handler keeps failing before it is dead-lettered."""
    otlp_endpoint: str | None = Field(
        None,
        validation_alias=_alias(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    """When set, spans go there over OTLP/HTTP; otherwise to ``trace_file``."""

    @property
    def trace_file(self) -> Path:
        """Local JSON-lines span file, used when no OTLP endpoint is configured."""
        return self.data_dir / "traces" / f"{self.service_name}.jsonl"

    @property
    def consumer_group_prefix(self) -> str:
        """Consumer groups are named ``<topic prefix><service>.<topic>``."""
        return f"{self.topic_prefix}{self.service_name}"
