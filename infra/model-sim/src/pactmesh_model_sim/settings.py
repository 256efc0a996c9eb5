"""The simulator's settings, read from ``PACTMESH_MODEL_SIM_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pactmesh_model_sim.config import SimConfig


class Settings(BaseSettings):
    """Where the simulator listens and how it behaves at start.

    The start-up config comes from ``PACTMESH_MODEL_SIM_CONFIG`` as JSON (for example
    ``{"rate_429": 0.05, "latency": {"kind": "lognormal", "median_ms": 400}}``) or one
    field at a time (``PACTMESH_MODEL_SIM_CONFIG__RATE_5XX=0.02``); ``PUT /sim/config``
    changes it while running and ``POST /sim/reset`` returns to it.
    """

    model_config = SettingsConfigDict(
        env_prefix="PACTMESH_MODEL_SIM_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    host: str = "127.0.0.1"
    """Loopback by default: the simulator is for tests and benchmarks on this machine."""
    port: int = Field(8020, ge=1, le=65535)
    config: SimConfig = SimConfig()
    scenario: str = "offline"
    """The scenario of a config that names none: ``offline`` answers as pactmesh's offline
    model would (valid, routed, drafted), so a mesh pointed at the simulator behaves as
    one with no provider until a fault is configured."""
    request_log_size: int = Field(1000, ge=0)
    """How many of the latest request bodies ``GET /sim/requests`` keeps."""
