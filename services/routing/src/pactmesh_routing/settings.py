"""Routing settings."""

from pathlib import Path

from pactmesh_kit.settings import KitSettings
from pactmesh_workflows.registry import registry
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class Settings(KitSettings):
    """Routing's settings; its own fields read ``PACTMESH_ROUTING_*``. The models come from
    the mesh-wide ``PACTMESH_MODELS_JSON``/``PACTMESH_MODELS_FILE`` (role ``routing``)."""

    model_config = SettingsConfigDict(env_prefix="PACTMESH_ROUTING_", extra="ignore", frozen=True)

    service_name: str = "routing"
    port: int = Field(8001, ge=1, le=65535)
    fallback_workflow: str = Field(default_factory=lambda: registry().human_triage.name)
    """Where a request goes when routing will not guess (support triage hands over to
    humans): below ``min_confidence``, after two invalid model answers, or with no answer."""
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    """Below this confidence a request goes to ``fallback_workflow`` for human triage."""
    examples_file: Path | None = None
    """JSON lines of ``{"text", "workflow"}``: the offline model's few-shot examples;
    unset: the examples each registered workflow declares."""
