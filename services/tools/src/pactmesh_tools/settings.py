"""Tools settings."""

from pactmesh_kit.settings import KitSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class Settings(KitSettings):
    """The tools service's settings; its own fields read ``PACTMESH_TOOLS_*``."""

    model_config = SettingsConfigDict(env_prefix="PACTMESH_TOOLS_", extra="ignore", frozen=True)

    service_name: str = "tools"
    port: int = Field(8003, ge=1, le=65535)
