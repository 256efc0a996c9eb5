"""Intake settings."""

from pactmesh_kit.settings import KitSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class Settings(KitSettings):
    """Intake's settings; its own fields read ``PACTMESH_INTAKE_*``."""

    model_config = SettingsConfigDict(env_prefix="PACTMESH_INTAKE_", extra="ignore", frozen=True)

    service_name: str = "intake"
    port: int = Field(8000, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8000"
    """Base of the status URLs handed to clients."""
