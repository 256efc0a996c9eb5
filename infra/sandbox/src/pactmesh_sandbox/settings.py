"""Sandbox settings."""

from pathlib import Path

from pactmesh_kit.settings import KitSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class Settings(KitSettings):
    """The sandbox's settings; its own fields read ``PACTMESH_SANDBOX_*``.

    ``PACTMESH_DATA_DIR`` (shared) says where the ledger's SQLite file lives.
    """

    model_config = SettingsConfigDict(env_prefix="PACTMESH_SANDBOX_", extra="ignore", frozen=True)

    service_name: str = "sandbox"
    port: int = Field(8010, ge=1, le=65535)
    seed: int = 0
    """Seeds fault injection: one random generator per backend, reseeded whenever that
    backend's faults are set, so the same faults and traffic give the same failures."""
    hang_s: float = Field(60.0, gt=0, le=600)
    """How long an injected timeout holds a request (longer than any client timeout)
    before answering 504; it ends sooner when the client hangs up."""
    database: Path | None = None
    """The SQLite file; ``<data dir>/sandbox.sqlite3`` when unset."""

    @property
    def database_path(self) -> Path:
        """Where the idempotency keys and the ledger are kept."""
        return self.database or self.data_dir / "sandbox.sqlite3"
