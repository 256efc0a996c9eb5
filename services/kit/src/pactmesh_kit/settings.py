"""Settings every service shares; each service subclasses them with its own fields."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pactmesh_contracts.topics import MESH_TOPICS
from pactmesh_contracts.usage import Budgets, PriceTable
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pactmesh_kit.collector import DEFAULT_THRESHOLDS

if TYPE_CHECKING:
    from faststream.security import BaseSecurity

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def comma_separated(value: Any) -> Any:
    """A list setting as the environment gives it (``a, b,c``), as a tuple of its
    non-empty parts; any other value as it is. For ``mode="before"`` validators of
    ``NoDecode`` fields."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


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
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", validation_alias=_alias("KAFKA_SECURITY_PROTOCOL")
    )
    """How this service reaches Kafka: ``SASL_SSL`` (or ``SASL_PLAINTEXT``) authenticates
    it as ``kafka_sasl_username``; ``SSL`` and ``SASL_SSL`` verify the brokers' TLS
    certificates against ``kafka_ssl_cafile`` (the system's CAs when unset)."""
    kafka_sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", validation_alias=_alias("KAFKA_SASL_MECHANISM")
    )
    kafka_sasl_username: str | None = Field(None, validation_alias=_alias("KAFKA_SASL_USERNAME"))
    """The service's own Kafka principal (one per service, so that ACLs let each write only
    the topics it owns)."""
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias=_alias("KAFKA_SASL_PASSWORD")
    )
    kafka_ssl_cafile: Path | None = Field(None, validation_alias=_alias("KAFKA_SSL_CAFILE"))
    """PEM file of the CA(s) that signed the brokers' certificates."""
    topic_prefix: str = Field("pactmesh.", validation_alias=_alias("PACTMESH_TOPIC_PREFIX"))
    """Prepended to every logical topic name (tests use a fresh prefix each)."""
    data_dir: Path = Field(Path(".cache/run"), validation_alias=_alias("PACTMESH_DATA_DIR"))
    """Where SQLite files and local trace files live."""
    http_host: str = Field("127.0.0.1", validation_alias=_alias("PACTMESH_HTTP_HOST"))
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "uvloop", validation_alias=_alias("PACTMESH_EVENT_LOOP")
    )
    """The service's event loop: ``uvloop`` (libuv's), faster than the standard
    library's ``asyncio`` in both orders of its A/B on a quiet machine
    (docs/benchmarks.md); ``asyncio`` is one setting away."""
    gc_thresholds: Annotated[tuple[int, int, int], NoDecode] = Field(
        DEFAULT_THRESHOLDS, validation_alias=_alias("PACTMESH_GC_THRESHOLDS")
    )
    """The garbage collector's thresholds, ``young,middle,old`` (``gc.set_threshold``):
    ``100000,50,100`` by default, CPython's own are ``700,10,10``. With hundreds of
    workflows in flight CPython's spend a third of the orchestrator's CPU collecting
    (``pactmesh_kit.collector``, its A/B in docs/benchmarks.md)."""
    untraced_topics: Annotated[tuple[str, ...], NoDecode] = Field(
        ("audit", "workflow.progress"), validation_alias=_alias("PACTMESH_UNTRACED_TOPICS")
    )
    """Topics whose records get no producer or consumer span, only the trace context in
    their headers (comma-separated logical names; empty: every record traced). By default
    the records about a request rather than steps of it: its timeline (``audit``) and its
    status transitions and streamed tokens (``workflow.progress``), some 13 of a
    support-triage workflow's records, each a span where it is published and one where
    intake reads it. Every step (routing, each segment of the run, each tool and model
    call, delivery) keeps its spans: one trace per request either way. Their A/B is in
    docs/benchmarks.md."""
    kafka_linger_ms: int = Field(
        5, ge=0, le=1_000, validation_alias=_alias("PACTMESH_KAFKA_LINGER_MS")
    )
    """How long a producer holds a record for others to the same partition, to send
    them in one request (aiokafka's ``linger_ms``; 0 sends at once). 5 ms: 10-14% more
    workflows/s and 7-10% less CPU per workflow than 0 in both orders of its A/B
    (docs/benchmarks.md), for at most 5 ms more per hop."""
    kafka_fetch_max_wait_ms: int = Field(
        3_000, ge=0, le=30_000, validation_alias=_alias("PACTMESH_KAFKA_FETCH_MAX_WAIT_MS")
    )
    """How long the broker holds a subscriber's fetch while it has no record for it
    (aiokafka's ``fetch_max_wait_ms``, 500 by default). A fetch returns as soon as one
    record is there, so this sets how often an idle consumer asks, not how late a record
    arrives; what it can delay is a partition resumed (after a stall) while a fetch for
    the consumer's other partitions is held, by up to this much. 3 s instead of aiokafka's
    0.5: an idle mesh's broker 50-53 -> 29-34 CPU ms/s, its services 44-47 -> 35-40, and
    under load 4-7% more workflows/s in both orders of its A/B (docs/benchmarks.md)."""
    kafka_idle_poll_ms: int = Field(
        1000, ge=0, le=30_000, validation_alias=_alias("PACTMESH_KAFKA_IDLE_POLL_MS")
    )
    """How long a subscriber's poll waits for records while none come (a record that
    arrives is taken at once, whatever this is): it sets how often an idle subscriber
    wakes up. 0 keeps FastStream's own loop, a 25 ms poll and a 25 ms pause after each
    empty one (its A/B in docs/benchmarks.md)."""
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
    shutdown_grace_s: float = Field(
        30.0, gt=0, validation_alias=_alias("PACTMESH_SHUTDOWN_GRACE_S")
    )
    """Seconds the service takes at most to stop after SIGTERM: a third for the HTTP
    requests in flight (SSE streams included), a third for the Kafka handlers in flight,
    the rest for committing their offsets and closing stores. The platform's grace
    (compose's ``stop_grace_period``, Kubernetes' ``terminationGracePeriodSeconds``) is
    the same 30 s, so it never kills a service that is still stopping cleanly."""

    @field_validator("untraced_topics", mode="before")
    @classmethod
    def _topic_list(cls, value: Any) -> Any:
        """``audit,workflow.progress`` as the environment gives it."""
        return comma_separated(value)

    @field_validator("untraced_topics")
    @classmethod
    def _known_topics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Only the mesh's own topics: a misspelt name would trace what it meant to spare."""
        known = {topic.name for topic in MESH_TOPICS}
        if unknown := sorted(set(value) - known):
            raise ValueError(f"not a mesh topic: {', '.join(unknown)} (known: {sorted(known)})")
        return value

    @field_validator("gc_thresholds", mode="before")
    @classmethod
    def _thresholds(cls, value: Any) -> Any:
        """``100000,50,100`` as the environment gives it."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(","))
        return value

    @field_validator("gc_thresholds")
    @classmethod
    def _positive_young(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        """A young threshold of 0 would switch the collector off altogether."""
        if value[0] < 1 or min(value) < 0:
            raise ValueError("the young threshold must be at least 1, the others at least 0")
        return value

    @property
    def shutdown_phase_s(self) -> float:
        """Each of the three phases of ``shutdown_grace_s``."""
        return self.shutdown_grace_s / 3

    otlp_endpoint: str | None = Field(
        None,
        validation_alias=_alias(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    """When set, spans go there over OTLP/HTTP; otherwise to ``trace_file``."""

    genai_capture_content: str = Field(
        "NO_CONTENT", validation_alias=_alias("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    )
    """Whether GenAI spans carry message content (prompts, outputs, tool arguments and
    results, sensitive fields redacted): ``SPAN_ONLY`` or ``SPAN_AND_EVENT`` (or ``true``)
    do, ``NO_CONTENT`` (the default) does not. The values of opentelemetry-util-genai;
    pactmesh emits no GenAI events, so ``*_EVENT`` means spans here."""
    metrics_enabled: bool = Field(True, validation_alias=_alias("PACTMESH_METRICS_ENABLED"))
    """Off, every instrument is a no-op and ``/metrics`` is empty: only to measure what
    the metrics cost (``make bench``'s ``bare`` phase)."""
    metrics_token: SecretStr | None = Field(None, validation_alias=_alias("PACTMESH_METRICS_TOKEN"))
    """When set, ``/metrics`` answers only ``Authorization: Bearer <this>`` (Prometheus'
    ``authorization.credentials_file``); unset, it is public like the health routes."""
    model_prices: PriceTable = Field(
        default_factory=PriceTable, validation_alias=_alias("PACTMESH_MODEL_PRICES")
    )
    """JSON: ``{"models": {"openai:gpt-4o-mini": {"input_per_mtok": 0.15,
    "output_per_mtok": 0.6}}}``; a model left out costs nothing."""
    budgets: Budgets = Field(default_factory=Budgets, validation_alias=_alias("PACTMESH_BUDGETS"))
    """JSON: ``{"default": {"tokens_per_day": 1000000, "cost_per_request": 0.05},
    "tenants": {"acme": {...}}}``; no limit by default."""

    @property
    def capture_content(self) -> bool:
        """Whether spans carry message content."""
        value = self.genai_capture_content.strip().upper()
        return value in {"SPAN_ONLY", "SPAN_AND_EVENT", "EVENT_ONLY", "TRUE", "1"}

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

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> KitSettings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        return self

    def kafka_security(self) -> BaseSecurity | None:
        """FastStream's security object for these settings (``None``: plaintext)."""
        from faststream.security import (
            BaseSecurity,
            SASLPlaintext,
            SASLScram256,
            SASLScram512,
        )

        if self.kafka_security_protocol == "PLAINTEXT":
            return None
        tls = self.kafka_security_protocol.endswith("SSL")
        context = _tls_context(self.kafka_ssl_cafile) if tls else None
        if self.kafka_security_protocol == "SSL":
            return BaseSecurity(ssl_context=context, use_ssl=True)
        sasl = {
            "PLAIN": SASLPlaintext,
            "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512,
        }
        password = self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else ""
        return sasl[self.kafka_sasl_mechanism](
            self.kafka_sasl_username or "", password, ssl_context=context, use_ssl=tls
        )

    def kafka_client_options(self) -> dict[str, Any]:
        """The same settings as keyword arguments of aiokafka's clients (admin, producer,
        consumer), for the tools that use aiokafka directly."""
        from faststream.kafka.security import parse_security

        return {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": "PLAINTEXT",
            **parse_security(self.kafka_security()),
        }

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


class TopicSettings(KitSettings):
    """What ``pactmesh-topics`` reads besides the connection (it connects as an admin
    principal: ``KAFKA_SASL_USERNAME`` of a super user on a secured cluster): how the
    topics are replicated and how long the audit and dead-letter topics keep records."""

    service_name: str = "bootstrap"
    replication_factor: int | None = Field(
        None, ge=1, validation_alias=_alias("PACTMESH_KAFKA_REPLICATION_FACTOR")
    )
    """Replicas of every partition. Unset: 3 on a cluster of three or more brokers, else
    one per broker (1 on a single local broker)."""
    min_insync_replicas: int | None = Field(
        None, ge=1, validation_alias=_alias("PACTMESH_KAFKA_MIN_INSYNC_REPLICAS")
    )
    """Replicas that must have a record before an ``acks=all`` producer (every service)
    is answered. Unset: 2 when the replication factor is 3 or more, else 1."""
    audit_retention_days: int = Field(
        365, ge=-1, validation_alias=_alias("PACTMESH_AUDIT_RETENTION_DAYS")
    )
    """How long the audit topic keeps records; ``-1`` keeps them forever."""
    dead_letter_retention_days: int = Field(
        30, ge=-1, validation_alias=_alias("PACTMESH_DEAD_LETTER_RETENTION_DAYS")
    )
    """How long the dead-letter topic keeps what consumers refused; ``-1``: forever."""

    @model_validator(mode="after")
    def _consistent(self) -> TopicSettings:
        if 0 in (self.audit_retention_days, self.dead_letter_retention_days):
            raise ValueError("a retention of 0 days would delete at once; -1 keeps forever")
        factor, isr = self.replication_factor, self.min_insync_replicas
        if factor is not None and isr is not None and isr > factor:
            raise ValueError(
                f"PACTMESH_KAFKA_MIN_INSYNC_REPLICAS={isr} exceeds "
                f"PACTMESH_KAFKA_REPLICATION_FACTOR={factor}: no write could succeed"
            )
        return self


def _tls_context(cafile: Path | None) -> Any:
    """A client TLS context that verifies the brokers' certificates and host names."""
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=str(cafile) if cafile else None)
