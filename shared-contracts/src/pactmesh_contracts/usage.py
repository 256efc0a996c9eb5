"""Token use and what it costs, and the budgets it is held to.

``Usage`` travels in events (a routed request carries what routing spent on it, an audit
record what one model call spent). ``PriceTable`` and ``Budgets`` are the documents the
settings ``PACTMESH_MODEL_PRICES`` and ``PACTMESH_BUDGETS`` hold (JSON); they are here,
with pydantic alone, so that every service (intake refusing a tenant over its daily
budget, a workflow stopping before a model call over its request's budget) reads them
the same way.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt


class Usage(BaseModel):
    """Tokens and their cost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: NonNegativeInt = 0
    output_tokens: NonNegativeInt = 0
    cost: NonNegativeFloat = 0.0
    """In the price table's currency (USD by convention)."""

    @property
    def tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost=round(self.cost + other.cost, 9),
        )


class ModelPrice(BaseModel):
    """What one model's tokens cost, per million."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: NonNegativeFloat = 0.0
    output_per_mtok: NonNegativeFloat = 0.0


class PriceTable(BaseModel):
    """Prices by model spec string (``openai:gpt-4o-mini``); a model left out costs 0
    (the offline model and the simulator)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[str, ModelPrice] = Field(default_factory=dict)

    def usage(self, model: str, *, input_tokens: int, output_tokens: int) -> Usage:
        """The usage of one call, priced."""
        price = self.models.get(model, ModelPrice())
        cost = (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens, cost=round(cost, 9))


class Budget(BaseModel):
    """Limits on one tenant's spend; a limit left unset does not apply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens_per_day: NonNegativeInt | None = None
    cost_per_day: NonNegativeFloat | None = None
    """Per UTC day."""
    tokens_per_request: NonNegativeInt | None = None
    cost_per_request: NonNegativeFloat | None = None

    def day_exceeded(self, spent: Usage) -> str | None:
        """Why a tenant that ``spent`` this today may not start another request."""
        return _over(spent, self.tokens_per_day, self.cost_per_day, "daily")

    def request_exceeded(self, spent: Usage) -> str | None:
        """Why a request that ``spent`` this may not call a model again."""
        return _over(spent, self.tokens_per_request, self.cost_per_request, "per-request")


def _over(spent: Usage, tokens: int | None, cost: float | None, which: str) -> str | None:
    if tokens is not None and spent.tokens >= tokens:
        return f"{which} token budget of {tokens} reached ({spent.tokens} tokens spent)"
    if cost is not None and spent.cost >= cost:
        return f"{which} cost budget of {cost:g} reached ({spent.cost:.6g} spent)"
    return None


class Budgets(BaseModel):
    """Every tenant's budget: ``default`` unless ``tenants`` names one of its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: Budget = Budget()
    tenants: dict[str, Budget] = Field(default_factory=dict)

    def of(self, tenant: str) -> Budget:
        """``tenant``'s budget."""
        return self.tenants.get(tenant, self.default)
