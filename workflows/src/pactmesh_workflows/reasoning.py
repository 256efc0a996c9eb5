"""What workflows reason with: the model chains and the semantic cache."""

from __future__ import annotations

from dataclasses import dataclass, field

from pactmesh_contracts.usage import Budgets, PriceTable
from pactmesh_reasoning.models import ModelRouter, ModelsConfig
from pactmesh_reasoning.semantic_cache import SemanticCache


@dataclass(frozen=True)
class Reasoning:
    """Handed to each workflow's ``build``; tests pass fakes.

    The cache lives in this process: each orchestrator instance has its own, so a
    question answered on one instance is a miss on another until that one answers it.
    """

    models: ModelRouter = field(default_factory=lambda: ModelRouter(ModelsConfig()))
    """The role chains; the offline model for every role by default."""
    cache: SemanticCache | None = None
    """Answers served again by meaning; ``None`` disables caching."""
    prices: PriceTable = field(default_factory=PriceTable)
    """What each model's tokens cost (``PACTMESH_MODEL_PRICES``)."""
    budgets: Budgets = field(default_factory=Budgets)
    """Each tenant's budgets (``PACTMESH_BUDGETS``): a step checks the per-request one
    before it calls a model, and hands the request to a person instead when it is spent."""
