"""What routing decided about one request."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, JsonValue


class Decision(BaseModel):
    """A routing decision and why it was taken."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    """Where the request goes; the fallback (support triage) when a person must triage."""
    confidence: float
    """0 to 1, as computed, also when the decision is a human triage."""
    reason: str
    """Why, in words, naming the model that answered when one was asked."""
    fields: dict[str, JsonValue]
    """Inputs extracted for the workflow's input contract."""
    human_triage: bool = False
    """Routing would not guess: below the threshold, an invalid or missing model answer,
    or a text that tries to instruct the router."""
    proposed: str | None = None
    """The workflow the model proposed, when a model was asked."""
    model: str | None = None
    """The model (spec string) that answered, when one was asked."""
