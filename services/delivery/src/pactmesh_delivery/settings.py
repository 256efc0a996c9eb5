"""Delivery settings."""

from pactmesh_kit.settings import KitSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class Settings(KitSettings):
    """The delivery service's settings; its own fields read ``PACTMESH_DELIVERY_*``."""

    model_config = SettingsConfigDict(env_prefix="PACTMESH_DELIVERY_", extra="ignore", frozen=True)

    service_name: str = "delivery"
    port: int = Field(8005, ge=1, le=65535)
