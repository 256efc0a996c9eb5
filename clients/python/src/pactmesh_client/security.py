"""How the client reaches a secured Kafka cluster: the standard settings every pactmesh
Kafka client reads (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_MECHANISM``,
``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD``, ``KAFKA_SSL_CAFILE``).

The services read the same variables through their settings; the client keeps its own
small model because it does not depend on the services' runtime kit.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from pactmesh_client.errors import PactmeshClientError


class KafkaSecurity(BaseModel):
    """TLS and SASL settings of one Kafka principal (an upstream or downstream system)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    """The principal the cluster's ACLs grant the inbound topic or result topics to."""
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    """PEM file of the CA(s) that signed the brokers' certificates (system CAs if unset)."""

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> Self:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_username and self.sasl_password
        ):
            raise PactmeshClientError(
                f"{self.security_protocol} needs a SASL username and password"
            )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """The settings the standard ``KAFKA_*`` variables give (plaintext when unset)."""
        env = os.environ if environ is None else environ
        names = {
            "security_protocol": "KAFKA_SECURITY_PROTOCOL",
            "sasl_mechanism": "KAFKA_SASL_MECHANISM",
            "sasl_username": "KAFKA_SASL_USERNAME",
            "sasl_password": "KAFKA_SASL_PASSWORD",
            "ssl_cafile": "KAFKA_SSL_CAFILE",
        }
        return cls.model_validate({field: env[var] for field, var in names.items() if var in env})

    def options(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka's producer and consumer."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.endswith("SSL"):
            # Verifies the brokers' certificates and host names (ssl's defaults).
            options["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.security_protocol.startswith("SASL_"):
            password = self.sasl_password.get_secret_value() if self.sasl_password else None
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": password,
            }
        return options
