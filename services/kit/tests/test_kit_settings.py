"""Shared settings read fixed environment variables, whatever the service's prefix."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pactmesh_kit.settings import KitSettings
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict


class ServiceSettings(KitSettings):
    """A service's settings, built the way every service builds them."""

    model_config = SettingsConfigDict(env_prefix="PACTMESH_DEMO_", extra="ignore", frozen=True)

    service_name: str = "demo"
    fallback_workflow: str = "support-triage"


ALIASES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "PACTMESH_KAFKA_BOOTSTRAP_SERVERS",
    "PACTMESH_TOPIC_PREFIX",
    "PACTMESH_DATA_DIR",
    "PACTMESH_RETRY_BACKOFF_INITIAL_S",
    "PACTMESH_RETRY_BACKOFF_MAX_S",
    "PACTMESH_SHUTDOWN_GRACE_S",
    "PACTMESH_TRACE_FILE_MAX_BYTES",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALIASES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = KitSettings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic_prefix == "pactmesh."
    assert (settings.retry_backoff_initial_s, settings.retry_backoff_max_s) == (0.2, 30.0)
    assert settings.shutdown_grace_s == 30.0
    assert settings.startup_timeout_s is None
    assert settings.trace_file_max_bytes == 50_000_000
    assert settings.otlp_endpoint is None


def test_environment_aliases(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("PACTMESH_TOPIC_PREFIX", "run-42.")
    monkeypatch.setenv("PACTMESH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PACTMESH_RETRY_BACKOFF_MAX_S", "3")
    monkeypatch.setenv("PACTMESH_SHUTDOWN_GRACE_S", "45")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge")

    settings = KitSettings()

    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert settings.topic_prefix == "run-42."
    assert settings.retry_backoff_max_s == 3.0
    assert settings.shutdown_grace_s == 45.0
    # OTEL_SERVICE_NAME names spans only: the service's identity (its consumer groups)
    # must not change with it, or two services could end up sharing a group.
    assert settings.service_name == "pactmesh"
    assert settings.consumer_group_prefix == "run-42.pactmesh"
    assert settings.trace_file == tmp_path / "traces" / "pactmesh.jsonl"


def test_otel_service_name_names_the_spans(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pactmesh_kit.telemetry import setup_telemetry

    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge")
    provider = setup_telemetry(KitSettings(data_dir=tmp_path))
    try:
        assert provider.resource.attributes["service.name"] == "edge"
    finally:
        provider.shutdown()


def test_second_bootstrap_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACTMESH_KAFKA_BOOTSTRAP_SERVERS", "other:19092")
    assert KitSettings().kafka_bootstrap_servers == "other:19092"


def test_either_otlp_variable_enables_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert KitSettings().otlp_endpoint == "http://collector:4318"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/v1/traces")
    assert KitSettings().otlp_endpoint == "http://traces:4318/v1/traces"


def test_service_settings_read_shared_and_prefixed_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "shared:9092")
    monkeypatch.setenv("PACTMESH_TOPIC_PREFIX", "t1.")
    monkeypatch.setenv("PACTMESH_DEMO_FALLBACK_WORKFLOW", "refund")

    settings = ServiceSettings()

    assert settings.kafka_bootstrap_servers == "shared:9092"
    assert settings.topic_prefix == "t1."
    assert settings.fallback_workflow == "refund"
    assert settings.service_name == "demo"
    assert settings.consumer_group_prefix == "t1.demo"


def test_fields_can_be_passed_by_name() -> None:
    settings = ServiceSettings(
        kafka_bootstrap_servers="x:1", topic_prefix="p.", retry_backoff_max_s=2
    )
    assert (settings.kafka_bootstrap_servers, settings.topic_prefix) == ("x:1", "p.")
    assert settings.retry_backoff_max_s == 2


def test_retry_backoff_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACTMESH_RETRY_BACKOFF_INITIAL_S", "0")
    with pytest.raises(ValidationError, match="greater than 0"):
        KitSettings()


def test_settings_are_frozen() -> None:
    settings = KitSettings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.topic_prefix = "other."


def test_kafka_is_plaintext_by_default() -> None:
    settings = KitSettings()
    assert settings.kafka_security() is None
    assert settings.kafka_client_options() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_ssl_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "intake")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret-intake")

    settings = KitSettings()
    options = settings.kafka_client_options()

    assert "s3cret-intake" not in repr(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "intake",
        "s3cret-intake",
    )
    context = options["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_the_ca_file_is_what_tls_trusts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(tmp_path / "missing-ca.pem"))
    with pytest.raises(FileNotFoundError):
        KitSettings().kafka_client_options()


def test_plain_over_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "tools")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "pw")
    options = KitSettings().kafka_client_options()
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "PLAIN"
    assert options["ssl_context"] is None


@pytest.mark.parametrize("missing", ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"])
def test_sasl_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "tools")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.delenv(missing)
    with pytest.raises(ValidationError, match="needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        KitSettings()


def test_an_unknown_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL")
    with pytest.raises(ValidationError, match="KAFKA_SECURITY_PROTOCOL"):
        KitSettings()
