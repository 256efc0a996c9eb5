"""Delivery settings."""

from pactmesh_kit.stores import StoreSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

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
    retention_s: float = Field(7 * 86_400.0, gt=0)
    """How long a finished delivery (delivered or dead) and a ledger entry are kept;
    then retention deletes them."""

    @property
    def retry_policy(self) -> RetryPolicy:
        """The webhook retry schedule these settings describe."""
        return RetryPolicy(
            max_attempts=self.webhook_max_attempts,
            base_s=self.webhook_backoff_base_s,
            cap_s=self.webhook_backoff_cap_s,
            attempt_timeout_s=self.webhook_timeout_s,
        )
