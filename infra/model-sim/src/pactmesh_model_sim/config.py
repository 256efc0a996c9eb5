"""The simulator's behaviour knobs: latency, rate limits, server errors, bad answers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MalformedKind = Literal["invalid_json", "hallucinated_field", "out_of_range", "unknown_tool"]
"""How an answer breaks the rules:

* ``invalid_json``: the tool arguments (or a JSON answer) are not JSON;
* ``hallucinated_field``: a field of the schema is renamed, or one it lacks is added;
* ``out_of_range``: an amount is multiplied by 100 or made negative;
* ``unknown_tool``: the model calls a tool it was not offered.
"""
MALFORMED_KINDS: tuple[MalformedKind, ...] = (
    "invalid_json",
    "hallucinated_field",
    "out_of_range",
    "unknown_tool",
)
Outcome = Literal[
    "ok",
    "429",
    "5xx",
    "invalid_json",
    "hallucinated_field",
    "out_of_range",
    "unknown_tool",
    "stream_dies",
    "stream_stalls",
]
"""What the simulator does with one request; ``GET /sim/stats`` counts them.

``stream_dies`` and ``stream_stalls`` break a streamed answer after its first
``stream_fault_after_tokens`` pieces: the connection is dropped mid-answer, or nothing
more is sent (until the client gives up). A request that is not streamed is answered
normally, and counted ``ok``."""


class FixedLatency(BaseModel):
    """Every answer takes the same time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["fixed"] = "fixed"
    ms: float = Field(0.0, ge=0)
    """Delay before the answer (before the first chunk of a stream)."""


class LognormalLatency(BaseModel):
    """Delays drawn from a lognormal distribution, the usual shape of model latency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["lognormal"] = "lognormal"
    median_ms: float = Field(gt=0)
    """The median delay; the mean is ``median_ms * exp(sigma**2 / 2)``."""
    sigma: float = Field(0.5, ge=0)
    """Spread of the underlying normal; 0 makes every delay the median."""
    max_ms: float | None = Field(None, gt=0)
    """Delays above this are cut to it (a heavy tail can otherwise outlast a test)."""


Latency = Annotated[FixedLatency | LognormalLatency, Field(discriminator="kind")]


class SimConfig(BaseModel):
    """How the simulator answers: for every model, or for one model name (see the API)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency: Latency = FixedLatency()
    stream_chunk_ms: float = Field(0.0, ge=0)
    """Pause between the chunks of a streamed answer."""
    rate_429: float = Field(0.0, ge=0, le=1)
    """Share of requests answered ``429 Too Many Requests``."""
    retry_after_s: float = Field(1.0, ge=0)
    """What a 429 asks the client to wait: ``Retry-After`` (whole seconds, rounded up)
    and ``retry-after-ms`` (exact, as OpenAI sends it)."""
    rate_5xx: float = Field(0.0, ge=0, le=1)
    """Share of requests answered ``503 Service Unavailable``."""
    stream_fault_after_tokens: int = Field(3, ge=0)
    """Pieces of text a ``stream_dies`` / ``stream_stalls`` answer sends before it breaks."""
    malformed_rate: float = Field(0.0, ge=0, le=1)
    """Share of the remaining requests answered with a rule-breaking answer."""
    malformed_kinds: dict[MalformedKind, float] = Field(
        default_factory=lambda: dict.fromkeys(MALFORMED_KINDS, 1.0)
    )
    """Relative weight of each kind of rule-breaking answer; absent kinds never occur."""
    fail_next: list[Outcome] = Field(default_factory=list)
    """Outcomes for the next requests, in order, before any random draw: for tests that
    need "the next two answers are 429, then normal ones" exactly."""
    scenario: str | None = None
    """Which registered scenario writes the answers: ``offline`` (answers as pactmesh's
    offline model: valid, routed, drafted), ``fill`` (fills each schema from the text; see
    ``scenarios``) or one given to ``create_app``; ``None``: the simulator's default
    (``Settings.scenario``, ``offline`` unless set)."""
    seed: int = 0
    """Seeds the random draws; setting a config restarts its sequence."""

    @model_validator(mode="after")
    def _rates_fit(self) -> SimConfig:
        if self.rate_429 + self.rate_5xx > 1:
            raise ValueError("rate_429 + rate_5xx must not exceed 1")
        if self.malformed_rate and not any(w > 0 for w in self.malformed_kinds.values()):
            raise ValueError("malformed_rate needs at least one kind with a positive weight")
        return self
