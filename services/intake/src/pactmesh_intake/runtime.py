"""What intake's handlers and routes share for the life of the app."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pactmesh_contracts.usage import Usage
from pactmesh_kit.auth.http import Authenticator
from pactmesh_kit.auth.policy import AccessPolicy, load_access_policy
from pactmesh_kit.auth.records import RecordAuthenticator
from pactmesh_kit.errors import NotReady
from pactmesh_kit.stores.outbox import Publisher, Relay

from pactmesh_intake.adapters.rate_limits import TenantRateLimiter
from pactmesh_intake.domain.live import LiveFeed
from pactmesh_intake.domain.requests import RequestStore
from pactmesh_intake.domain.timeline import AuditStore
from pactmesh_intake.settings import Settings


@dataclass
class Runtime:
    """Filled in by the app's lifespan; the store exists only while the app runs."""

    settings: Settings
    publisher: Relay
    """Publishes accepted requests at once, and what the outbox still holds later."""
    auditor: Publisher
    """Publishes audit records: the timeline's first step, an inbound request refused for
    who sent it."""
    store: RequestStore | None = None
    audit: AuditStore | None = None
    """The timeline's events and the usage counts (open while the app runs)."""
    live: LiveFeed = field(default_factory=LiveFeed)
    """Progress, token and result events for the SSE clients connected to this instance."""
    policy: AccessPolicy = field(init=False)
    """The access policy: who may submit, and which workflows (HTTP and Kafka alike)."""
    tokens: RecordAuthenticator = field(init=False)
    """Verifies the bearer token of each inbound record (HTTP's verifier and rules)."""
    submit_limiter: TenantRateLimiter = field(init=False)
    read_limiter: TenantRateLimiter = field(init=False)
    _spent: dict[str, tuple[float, Usage]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.policy = load_access_policy(settings.access_policy_file)
        self.tokens = RecordAuthenticator(Authenticator.from_settings(settings).verifier)
        self.submit_limiter = TenantRateLimiter(
            "submit", settings.submit_rate_limit, storage_uri=settings.rate_limit_storage
        )
        self.read_limiter = TenantRateLimiter(
            "read", settings.read_rate_limit, storage_uri=settings.rate_limit_storage
        )

    def require_audit(self) -> AuditStore:
        """The audit store; ``NotReady`` outside the app's lifespan."""
        if self.audit is None:
            raise NotReady("intake's audit store is not open")
        return self.audit

    async def over_daily_budget(self, tenant: str) -> str | None:
        """Why ``tenant`` may not start a request today, if its daily budget is spent.

        No query at all for a tenant without a daily limit; otherwise today's spend is
        read from the store at most every ``budget_cache_s`` per tenant.
        """
        budget = self.settings.budgets.of(tenant)
        if budget.tokens_per_day is None and budget.cost_per_day is None:
            return None
        now = time.monotonic()
        cached = self._spent.get(tenant)
        if cached is None or cached[0] < now:
            today = datetime.now(UTC).date()
            spent = await self.require_audit().spent(tenant, today)
            cached = self._spent[tenant] = (now + self.settings.budget_cache_s, spent)
        return budget.day_exceeded(cached[1])

    def require_store(self) -> RequestStore:
        """The store; ``NotReady`` outside the app's lifespan."""
        if self.store is None:
            raise NotReady("intake's request store is not open")
        return self.store
