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
    retry_backoff_initial_s: float = Field(
        0.2, gt=0, validation_alias=_alias("PACTMESH_RETRY_BACKOFF_INITIAL_S")
    )
    """First pause before a message whose handler failed (a dependency is down) is
    handled again; each further failure doubles it, up to ``retry_backoff_max_s``."""
    retry_backoff_max_s: float = Field(
        30.0, gt=0, validation_alias=_alias("PACTMESH_RETRY_BACKOFF_MAX_S")
    )
    """Longest pause between two attempts at a message whose handler keeps failing."""
    max_message_bytes: int = Field(
        1_048_576, ge=1024, validation_alias=_alias("PACTMESH_MAX_MESSAGE_BYTES")
    )
    """A consumed message larger than this is dead-lettered (``too_large``) undecoded."""
    dead_letter_max_bytes: int = Field(
        1_000_000, ge=16_384, validation_alias=_alias("PACTMESH_DEAD_LETTER_MAX_BYTES")
    )
    """Largest dead-letter record: below the dead-letter topic's and the producer's limit
    (1 MiB by default); a larger original is kept by reference (size, SHA-256, head)."""
    shutdown_grace_s: float = Field(
        30.0, ge=0, validation_alias=_alias("PACTMESH_SHUTDOWN_GRACE_S")
    )
    """On SIGTERM, how long the batches in hand may take to finish and commit."""
    startup_timeout_s: float | None = Field(
        None, gt=0, validation_alias=_alias("PACTMESH_STARTUP_TIMEOUT_S")
    )
    """How long start-up waits for Kafka and the service's stores (Postgres, files);
    unset: as long as it takes, logging each retry."""
    trace_file_max_bytes: int = Field(
        50_000_000, ge=1024, validation_alias=_alias("PACTMESH_TRACE_FILE_MAX_BYTES")
    )
    """A local trace file is rotated when it reaches this size."""
    trace_file_backups: int = Field(3, ge=1, validation_alias=_alias("PACTMESH_TRACE_FILE_BACKUPS"))
    """Rotated trace files kept (``<service>.jsonl.1`` ...); older ones are deleted, so a
    service's traces never take more than ``(backups + 1) * trace_file_max_bytes``."""
    otlp_endpoint: str | None = Field(
        None,
        validation_alias=_alias(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    """When set, spans go there over OTLP/HTTP; otherwise to ``trace_file``."""

    auth_issuer: str = Field("pactmesh-dev", validation_alias=_alias("PACTMESH_AUTH_ISSUER"))
    """The ``iss`` every bearer token must carry."""
    auth_audience: str = Field("pactmesh", validation_alias=_alias("PACTMESH_AUTH_AUDIENCE"))
    """The ``aud`` every bearer token must carry."""
    auth_jwks_url: str | None = Field(None, validation_alias=_alias("PACTMESH_AUTH_JWKS_URL"))
    """Production: the identity provider's JWKS URL. Unset: the local development issuer
    (``pactmesh token``) whose key lives in ``auth_key_dir``."""
    auth_algorithms: str = Field("ES256", validation_alias=_alias("PACTMESH_AUTH_ALGORITHMS"))
    """Comma-separated JWT algorithms accepted (asymmetric only), for example ``RS256``."""
    auth_key_dir_override: Path | None = Field(
        None, validation_alias=_alias("PACTMESH_AUTH_KEY_DIR")
    )
    access_policy_file: Path | None = Field(None, validation_alias=_alias("PACTMESH_ACCESS_POLICY"))
    """The access policy (roles and scopes to workflows, tools, review actions); the
    packaged ``pactmesh_kit/auth/access.toml`` when unset."""

    @property
    def auth_key_dir(self) -> Path:
        """Where the development issuer's private key lives (generated on first use)."""
        return self.auth_key_dir_override or self.data_dir / "auth"

    @property
    def trace_file(self) -> Path:
        """Local JSON-lines span file, used when no OTLP endpoint is configured."""
        return self.data_dir / "traces" / f"{self.service_name}.jsonl"

    @property
    def consumer_group_prefix(self) -> str:
        """Consumer groups are named ``<topic prefix><service>.<topic>``."""
        return f"{self.topic_prefix}{self.service_name}"
