"""Routing settings."""

from pactmesh_kit.settings import KitSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class Settings(KitSettings):
    """Routing's settings; its own fields read ``PACTMESH_ROUTING_*``."""

    model_config = SettingsConfigDict(env_prefix="PACTMESH_ROUTING_", extra="ignore", frozen=True)

    service_name: str = "routing"
    port: int = Field(8001, ge=1, le=65535)
    fallback_workflow: str = "support-triage"
    """Where a request goes when no rule matches (support triage hands over to humans)."""
