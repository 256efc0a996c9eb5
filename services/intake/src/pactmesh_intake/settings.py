"""Intake settings."""

from __future__ import annotations

from limits import parse_many
from pactmesh_kit.stores import StoreSettings
from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict


class Settings(StoreSettings):
    """Intake's settings; its own fields read ``PACTMESH_INTAKE_*``."""

    model_config = SettingsConfigDict(env_prefix="PACTMESH_INTAKE_", extra="ignore", frozen=True)

    service_name: str = "intake"
    port: int = Field(8000, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8000"
    """Base of the status URLs handed to clients."""
    max_body_bytes: int = Field(64 * 1024, ge=1)
    """Largest submission accepted: the HTTP body (413 beyond), or the request part of
    an inbound event, as JSON (dead-lettered beyond)."""
    submit_rate_limit: str = "200/second;6000/minute"
    """Submissions per tenant, in ``limits`` notation: several windows separated by
    ``;`` give a burst and a sustained rate (``5/second;100/minute``)."""
    read_rate_limit: str = "2000/second"
    """Status reads and event streams opened per tenant (``limits`` notation)."""
    rate_limit_storage: str = "memory://"
    """Where the rate-limit windows live (a ``limits`` storage URI). ``memory://`` counts
    per intake instance; ``redis://...`` shares one count between instances."""
    idempotency_retention_s: float = Field(24 * 3600.0, gt=0)
    """How long an ``Idempotency-Key`` is remembered after its first use."""
    request_retention_s: float = Field(7 * 86_400.0, gt=0)
    """How long a request (its status, history and result) is kept after its last
    status change; then retention deletes it (``GET`` answers 404)."""
    audit_retention_days: int = Field(365, ge=1)
    """How long the timeline keeps a request's steps (and the daily usage rows)."""
    budget_cache_s: float = Field(1.0, ge=0, le=60)
    """How long a tenant's spend today is reused before the store is asked again when
    checking its daily budget (only when the tenant has a daily limit)."""
    result_wait_s: float = Field(10.0, gt=0)
    """How long an event stream that saw ``delivered`` waits for the result event."""
    test_lost_acks: int = Field(0, ge=0)
    """Test hook, for the fault suite only (``PACTMESH_INTAKE_TEST_LOST_ACKS``, read at
    start-up): the first this many publishes of accepted requests reach the broker, then
    raise as an acknowledgement timeout would. Never set it in a deployment."""

    @model_validator(mode="after")
    def _keys_outlive_no_request(self) -> Settings:
        if self.request_retention_s < self.idempotency_retention_s:
            raise ValueError(
                "request_retention_s must be at least idempotency_retention_s: a key"
                " must never answer with a request that was already deleted"
            )
        return self

    @field_validator("submit_rate_limit", "read_rate_limit")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_many(value)  # raises ValueError on a malformed limit
        return value
