"""Orchestrator settings."""

from pathlib import Path
from typing import Literal

from pactmesh_kit.settings import KitSettings
from pactmesh_reasoning.semantic_cache import DEFAULT_THRESHOLD
from pydantic import AliasChoices, Field, SecretStr
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
    tool_deadline_margin_s: float = Field(30.0, ge=0, le=3_600)
    """How long after a call's own deadline the run stops waiting for its answer and
    takes its recovery path, as if the call had failed with a timeout."""
    sweep_interval_s: float = Field(5.0, gt=0, le=3_600)
    """How often the sweeper looks for due wake-ups: tool deadlines, stopped runs,
    finished runs past their retention."""
    sweep_batch: int = Field(200, ge=1, le=10_000)
    """Wake-ups taken per sweep."""
    stall_after_s: float = Field(300.0, gt=0, le=86_400)
    """A run segment not finished this long after it started is taken for stopped (its
    process died) and is run on by the sweeper; also how long a sweeper's claim lasts."""
    checkpoint_ttl_s: float = Field(7 * 86_400.0, gt=0)
    """How long a finished workflow's checkpoints are kept."""
    postgres_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "PACTMESH_POSTGRES_URL", "PACTMESH_ORCHESTRATOR_POSTGRES_URL"
        ),
    )
    """When set, checkpoints and outbox marks live in Postgres (several instances share
    them); otherwise in SQLite files under the data dir (one instance)."""
    postgres_pool_size: int = Field(10, ge=1, le=200)
    batch_max_records: int = Field(256, ge=1, le=10_000)
    """Events taken from a topic at once; their workflows advance concurrently."""
    token_window_ms: int = Field(50, ge=0, le=5_000)
    """Streamed tokens after a step's first are sent together, one event at most this
    often (0: an event per token)."""
    checkpoint_durability: Literal["sync", "exit"] = "sync"
    """When a run's steps are checkpointed: ``sync`` (the default), after every step;
    ``exit``, only at its start (its initial state), at each pause and at the end,
    before the events they imply are published (a process killed mid-segment is resumed
    from the last of these by the redelivered event, which recomputes the segment:
    ``tests-integration/test_checkpoint_durability.py`` kills it after every step of a
    workflow). ``exit`` is proven safe but measured no faster here, and a kill costs it
    more (the segment's model calls are made again): docs/benchmarks.md."""
    test_exit_after_step: int = Field(0, ge=0)
    """Test hook, for the integration tests only
    (``PACTMESH_ORCHESTRATOR_TEST_EXIT_AFTER_STEP``; 0, the default, is off): the process
    exits at once, as a kill -9 would stop it, after the Nth step it runs of a run (a
    node's update, a pause, or a segment's end: ``Engine``'s ``after_step``), unless that
    run already made a process exit (recorded under the data dir), so that a restarted
    process recovers it. Never set it in a deployment."""
    gate_policy: Path | None = None
    """The approval-gate policy file (TOML); the packaged default when unset."""
    cache_enabled: bool = True
    """Serve support-triage answers again for questions that mean the same (per tenant,
    in this instance's memory)."""
    cache_embeddings: str = "local:all-minilm-l6-v2"
    """The embeddings model of the semantic cache (``load_embeddings`` spec)."""
    cache_threshold: float = Field(DEFAULT_THRESHOLD, ge=-1.0, le=1.0)
    """Cosine at or above which a stored question counts as the same question (the
    default measured for precision 0.99: ``pactmesh_reasoning.cache_eval``)."""
    cache_ttl_s: float = Field(3600.0, gt=0)
    """How long a cached answer may be served."""
