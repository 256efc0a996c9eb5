"""Delivery settings."""

from typing import Annotated, Any

from pactmesh_kit.settings import comma_separated
from pactmesh_kit.stores import StoreSettings
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from pactmesh_delivery.adapters.secrets import SecretBox, generated_key
from pactmesh_delivery.domain.egress import IPNetwork
from pactmesh_delivery.domain.webhooks import RetryPolicy


class Settings(StoreSettings):
    """The delivery service's settings; its own fields read ``PACTMESH_DELIVERY_*``."""

    model_config = SettingsConfigDict(env_prefix="PACTMESH_DELIVERY_", extra="ignore", frozen=True)

    service_name: str = "delivery"
    port: int = Field(8005, ge=1, le=65535)

    webhook_max_attempts: int = Field(8, ge=1, le=100)
    """Attempts at one delivery before it is dead-lettered."""
    webhook_backoff_base_s: float = Field(1.0, gt=0)
    """Window of the first retry's random pause; each later window doubles (full jitter)."""
    webhook_backoff_cap_s: float = Field(300.0, gt=0)
    """No retry window is wider than this."""
    webhook_timeout_s: float = Field(10.0, gt=0, le=120)
    """Bound on one attempt, from connecting to the receiver's answer."""
    webhook_concurrency: int = Field(16, ge=1, le=1000)
    """Attempts in flight at once, across all webhooks."""
    webhook_poll_interval_s: float = Field(1.0, gt=0, le=60)
    """Longest the dispatcher waits before looking at the outbox again."""
    webhook_tenant_concurrency: int = Field(4, ge=1, le=1000)
    """Attempts in flight at once for one tenant's webhooks (per instance), so that one
    tenant's slow receivers leave slots to the others."""
    webhook_max_per_tenant: int = Field(20, ge=1, le=10_000)
    """Webhooks one tenant may register; one more is refused (409)."""
    webhook_allowed_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    """Networks webhooks may reach although they are not public (loopback, private,
    link-local, ...): comma-separated CIDRs, e.g. ``127.0.0.0/8,::1/128`` for the tests
    and ``make run``, or an on-premises receiver's network. Empty: public addresses only."""
    webhook_secret_keys: SecretStr | None = None
    """Comma-separated Fernet keys that encrypt webhook signing secrets at rest: the first
    encrypts, all decrypt (rotation). Unset: a key generated once under the data dir."""
    result_transaction_timeout_s: float = Field(15.0, ge=1, le=900)
    """Kafka's bound on one transaction of results (``transaction.timeout.ms``): an
    instance killed inside one holds back read-committed readers of its partitions
    until the coordinator aborts it, at most this long after it began."""
    result_transaction_max: int = Field(200, ge=1, le=10_000)
    """Results carried by one Kafka transaction at most (results waiting while one
    commits go out together in the next)."""
    retention_s: float = Field(7 * 86_400.0, gt=0)
    """How long a finished delivery (delivered or dead) and a ledger entry are kept;
    then retention deletes them."""

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)

    def secret_box(self) -> SecretBox:
        """What seals webhook secrets: the configured keys, or the data dir's own."""
        if self.webhook_secret_keys is not None:
            keys = self.webhook_secret_keys.get_secret_value().split(",")
            return SecretBox([key.strip() for key in keys if key.strip()])
        return SecretBox([generated_key(self.data_dir)])

    @property
    def retry_policy(self) -> RetryPolicy:
        """The webhook retry schedule these settings describe."""
        return RetryPolicy(
            max_attempts=self.webhook_max_attempts,
            base_s=self.webhook_backoff_base_s,
            cap_s=self.webhook_backoff_cap_s,
            attempt_timeout_s=self.webhook_timeout_s,
        )
