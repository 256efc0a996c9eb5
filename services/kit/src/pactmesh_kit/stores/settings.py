"""The settings every stateful service (intake, hitl, delivery, tools) adds to the kit's."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

from pactmesh_kit.settings import KitSettings


class StoreSettings(KitSettings):
    """Where a service keeps its state, and how its outbox and retention task run.

    The shared fields read fixed environment variables (one setting for the whole mesh);
    the pool size reads the service's own prefix (``PACTMESH_HITL_POSTGRES_POOL_SIZE``).
    """

    postgres_url: SecretStr | None = Field(
        None, validation_alias=AliasChoices("PACTMESH_POSTGRES_URL")
    )
    """When set (``postgresql://user@host:5432/db``), the service's state lives in
    Postgres and several instances share it; otherwise in a SQLite file in the data dir,
    for one instance."""
    postgres_pool_size: int = Field(10, ge=1, le=200)
    """Connections this instance keeps to Postgres at most."""
    outbox_lease_s: float = Field(
        30.0, gt=0, le=3_600, validation_alias=AliasChoices("PACTMESH_OUTBOX_LEASE_S")
    )
    """How long an event written to an outbox is left to the instance that wrote it (it
    publishes at once) before any instance's relay publishes it."""
    outbox_interval_s: float = Field(
        1.0, gt=0, le=600, validation_alias=AliasChoices("PACTMESH_OUTBOX_INTERVAL_S")
    )
    """How often the outbox relay looks for events left unpublished."""
    retention_interval_s: float = Field(
        600.0, gt=0, le=86_400, validation_alias=AliasChoices("PACTMESH_RETENTION_INTERVAL_S")
    )
    """How often rows past their retention are pruned."""

    @property
    def postgres(self) -> str | None:
        """The Postgres URL in clear, or None (SQLite)."""
        return self.postgres_url.get_secret_value() if self.postgres_url else None
