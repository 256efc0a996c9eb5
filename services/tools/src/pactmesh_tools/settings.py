"""Tools settings: where the sandbox is, how calls to it are attempted and guarded, and
how many the inbox's dispatcher runs at once."""

from __future__ import annotations

from typing import Any

from pactmesh_kit.stores import StoreSettings
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from pactmesh_tools.domain.inbox import DispatchLimits
from pactmesh_tools.domain.registry import ToolPolicy
from pactmesh_tools.domain.resilience import BackendLimits


class ToolPolicyOverride(BaseModel):
    """One tool's departures from the default policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempt_timeout_s: float | None = Field(None, gt=0, le=600)
    max_attempts: int | None = Field(None, ge=1, le=20)
    backoff_initial_s: float | None = Field(None, ge=0, le=60)
    backoff_max_s: float | None = Field(None, ge=0, le=600)
    backoff_jitter_s: float | None = Field(None, ge=0, le=60)


class BackendLimitsOverride(BaseModel):
    """One backend's departures from the default limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int | None = Field(None, ge=1, le=10_000)
    breaker_threshold: int | None = Field(None, ge=1, le=1_000)
    breaker_cooldown_s: float | None = Field(None, gt=0, le=3_600)


class Settings(StoreSettings):
    """The tools service's settings; its own fields read ``PACTMESH_TOOLS_*``."""

    model_config = SettingsConfigDict(env_prefix="PACTMESH_TOOLS_", extra="ignore", frozen=True)

    service_name: str = "tools"
    port: int = Field(8003, ge=1, le=65535)
    sandbox_url: str = "http://127.0.0.1:8010"
    """Base URL of the sandbox backends (``python -m pactmesh_sandbox``)."""

    attempt_timeout_s: float = Field(5.0, gt=0, le=600)
    """Bound on one backend request; a call's overall deadline is its ``timeout_s``."""
    max_attempts: int = Field(4, ge=1, le=20)
    """Attempts per call, first one included, on 5xx, timeouts and lost connections."""
    backoff_initial_s: float = Field(0.1, ge=0, le=60)
    backoff_max_s: float = Field(2.0, ge=0, le=600)
    backoff_jitter_s: float = Field(0.1, ge=0, le=60)
    tool_overrides: dict[str, ToolPolicyOverride] = Field(default_factory=dict)
    """Per tool, as JSON: ``{"erp.create_purchase_order": {"attempt_timeout_s": 15}}``."""

    concurrency: int = Field(16, ge=1, le=10_000)
    """Requests in flight per backend (``PACTMESH_TOOLS_CONCURRENCY``); also the size of
    each backend's HTTP connection pool. Calls beyond it wait for a slot within their
    deadline. The benchmark, with 10,000 workflows waiting on tools at once, sets 10000."""
    breaker_threshold: int = Field(5, ge=1, le=1_000)
    """Consecutive failures that open a backend's circuit breaker."""
    breaker_cooldown_s: float = Field(10.0, gt=0, le=3_600)
    """How long an open breaker fails fast before letting a trial call through."""
    backend_overrides: dict[str, BackendLimitsOverride] = Field(default_factory=dict)
    """Per backend, as JSON: ``{"carriers.oceanic": {"concurrency": 2}}``."""

    max_in_flight: int = Field(10_000, ge=1, le=1_000_000)
    """Tool calls the dispatcher runs at once, all backends together; the rest wait in
    the inbox (``PACTMESH_TOOLS_MAX_IN_FLIGHT``)."""
    inbox_batch_size: int = Field(500, ge=1, le=10_000)
    """Pending calls the dispatcher reads from the inbox per query."""
    inbox_retention_s: float = Field(3_600.0, ge=0, le=30 * 86_400)
    """How long an answered call stays in the inbox, so a redelivered request is ignored."""
    inbox_prune_interval_s: float = Field(60.0, gt=0, le=86_400)
    """How often answered calls past their retention are deleted."""
    inbox_lease_s: float = Field(30.0, gt=0, le=3_600)
    """How long a claimed call stays with the instance that claimed it without being
    renewed (renewed every third of it while it runs): after an instance dies, another
    runs its calls within this long (Postgres; one instance owns a SQLite inbox)."""

    def tool_policy(self, tool: str) -> ToolPolicy:
        """The policy for ``tool``: the defaults above, then its override."""
        return ToolPolicy(**self._merged(ToolPolicyOverride, self.tool_overrides.get(tool)))

    def backend_limits(self, backend: str) -> BackendLimits:
        """The limits for ``backend``: the defaults above, then its override."""
        return BackendLimits(
            **self._merged(BackendLimitsOverride, self.backend_overrides.get(backend))
        )

    def dispatch_limits(self) -> DispatchLimits:
        """The dispatcher's in-flight cap, page size and retention."""
        return DispatchLimits(
            max_in_flight=self.max_in_flight,
            batch_size=self.inbox_batch_size,
            retention_s=self.inbox_retention_s,
            prune_interval_s=self.inbox_prune_interval_s,
            lease_s=self.inbox_lease_s,
        )

    def _merged(self, shape: type[BaseModel], override: BaseModel | None) -> dict[str, Any]:
        defaults = {name: getattr(self, name) for name in shape.model_fields}
        return defaults | (override.model_dump(exclude_none=True) if override else {})
