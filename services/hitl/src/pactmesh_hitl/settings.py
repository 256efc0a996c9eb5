"""hitl settings."""

from pactmesh_kit.stores import StoreSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class Settings(StoreSettings):
    """The hitl service's settings; its own fields read ``PACTMESH_HITL_*``."""

    model_config = SettingsConfigDict(env_prefix="PACTMESH_HITL_", extra="ignore", frozen=True)

    service_name: str = "hitl"
    port: int = Field(8004, ge=1, le=65535)
    expiry_check_s: float = Field(5.0, gt=0, le=3600)
    """How often overdue reviews are looked for."""
    intake_url: str = "http://127.0.0.1:8000"
    """Where intake answers: the reviewer page shows a request's timeline from it."""
    claim_ttl_s: float = Field(900.0, gt=0, le=86_400)
    """How long a reviewer's claim keeps others from deciding (claiming again extends it)."""
    review_retention_s: float = Field(30 * 86_400.0, gt=0)
    """How long a settled review (decided, expired, escalated, withdrawn) and its history
    are kept; then retention deletes them. Pending reviews are kept until settled."""
    test_exit_before_publish: bool = False
    """Test hook, for the fault suite only (``PACTMESH_HITL_TEST_EXIT_BEFORE_PUBLISH``,
    read at start-up): the process exits at once, as a kill -9 would stop it, when it is
    about to publish a decision or expiry it has committed. Never set it in a deployment."""
