"""The client reads the standard KAFKA_* settings, as every pactmesh Kafka client does
(the real secured broker is tests-integration/test_secured_kafka.py)."""

from __future__ import annotations

import ssl

import pytest
from pactmesh_client import KafkaSecurity, PactmeshClientError, RequestPublisher, ResultSubscriber

SCRAM_OVER_TLS = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "crm",
    "KAFKA_SASL_PASSWORD": "s3cret-crm",
}


def test_plaintext_when_nothing_is_set() -> None:
    assert KafkaSecurity.from_env({}).options() == {"security_protocol": "PLAINTEXT"}


def test_scram_over_tls_verifies_the_brokers() -> None:
    security = KafkaSecurity.from_env(SCRAM_OVER_TLS)
    options = security.options()
    assert "s3cret-crm" not in repr(security)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "crm",
        "s3cret-crm",
    )
    assert options["ssl_context"].verify_mode is ssl.CERT_REQUIRED
    assert options["ssl_context"].check_hostname


def test_sasl_without_a_password_is_refused() -> None:
    with pytest.raises(PactmeshClientError, match="needs a SASL username and password"):
        KafkaSecurity.from_env({**SCRAM_OVER_TLS, "KAFKA_SASL_PASSWORD": ""})


def test_publisher_and_subscriber_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**SCRAM_OVER_TLS, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}.items():
        monkeypatch.setenv(name, value)
    publisher = RequestPublisher("127.0.0.1:1", token="t")
    subscriber = ResultSubscriber("127.0.0.1:1", group_id="billing")
    for options in (publisher._options, subscriber._options):
        assert options["security_protocol"] == "SASL_PLAINTEXT"
        assert options["sasl_plain_username"] == "crm"


def test_explicit_settings_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SCRAM_OVER_TLS.items():
        monkeypatch.setenv(name, value)
    plain = KafkaSecurity()
    publisher = RequestPublisher("127.0.0.1:1", token="t", security=plain, client_id="crm-1")
    assert publisher._options["security_protocol"] == "PLAINTEXT"
    assert "sasl_plain_username" not in publisher._options
