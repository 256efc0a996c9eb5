"""Orchestrator settings."""

from pactmesh_kit.settings import KitSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class Settings(KitSettings):
    """The orchestrator's settings; its own fields read ``PACTMESH_ORCHESTRATOR_*``."""

    model_config = SettingsConfigDict(
        env_prefix="PACTMESH_ORCHESTRATOR_", extra="ignore", frozen=True
    )

    service_name: str = "orchestrator"
    port: int = Field(8002, ge=1, le=65535)
    tool_timeout_s: float = Field(30.0, gt=0, le=600)
    """Deadline handed to the tools service with each call."""
