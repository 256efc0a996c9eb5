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
