"""The contract a model fills to route a request, and the business rules on its answer.

Both are built from the workflow registry: the workflow enum and its description, and
one optional field per field a registered workflow's input needs, with that field's
rule. ``structured_call`` parses the model's answer strictly against
``RoutingDecision`` (no unknown field survives), then runs ``business_rules``; a broken
answer is sent back once for repair, and a second broken one goes to a person.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal, cast

from pactmesh_reasoning.structured import Validator
from pactmesh_workflows.registry import Registry, registry
from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model


class RoutingFieldsBase(BaseModel):
    """Inputs the chosen workflow's contract needs, as written in the request; leave out
    whatever the request does not state."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class RoutingDecisionBase(BaseModel):
    """Route one customer or operations request to the workflow that should handle it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    workflow: str
    confidence: float = Field(ge=0.0, le=1.0)
    """How sure you are that ``workflow`` is right, from 0 to 1."""
    reason: str = Field(min_length=1, max_length=1000)
    """One sentence on why this workflow fits the request."""
    fields: RoutingFieldsBase = Field(default_factory=RoutingFieldsBase)

    def field_values(self) -> dict[str, JsonValue]:
        """The fields the answer states (those left out are omitted)."""
        values: dict[str, JsonValue] = self.fields.model_dump(exclude_none=True)
        return values


def workflow_descriptions(workflows: Registry) -> str:
    """``name: which requests belong there`` for every workflow, as one sentence."""
    return "; ".join(f"{n}: {d.routing.description}" for n, d in workflows.items()) + "."


def decision_model(workflows: Registry) -> type[RoutingDecisionBase]:
    """The routing contract for ``workflows``: their names as the enum, their fields."""
    definitions: dict[str, Any] = {
        f.name: (f.annotation, Field(None, description=f.description)) for f in workflows.fields
    }
    fields_model = create_model(
        "RoutingFields",
        __base__=RoutingFieldsBase,
        __doc__=RoutingFieldsBase.__doc__,
        **definitions,
    )
    names = cast(Any, Literal).__getitem__(workflows.names)
    return create_model(
        "RoutingDecision",
        __base__=RoutingDecisionBase,
        __doc__=RoutingDecisionBase.__doc__,
        workflow=(names, Field(description=workflow_descriptions(workflows))),
        fields=(fields_model, Field(default_factory=fields_model)),
    )


RoutingDecision = decision_model(registry())
"""The contract routing's model fills, for the registered workflows."""
RoutingFields = cast(type[RoutingFieldsBase], RoutingDecision.model_fields["fields"].annotation)
RegisteredWorkflow: Any = RoutingDecision.model_fields["workflow"].annotation
"""The registered workflows as the schema's enum (a ``Literal``)."""


def business_rules(
    *, text: str, workflows: Collection[str]
) -> list[Validator[RoutingDecisionBase]]:
    """The checks an answer about ``text`` must pass, routing among ``workflows``."""

    def registered(decision: RoutingDecisionBase) -> list[str]:
        if decision.workflow in workflows:
            return []
        return [f"workflow: {decision.workflow!r} is not one of {', '.join(workflows)}"]

    def fields(decision: RoutingDecisionBase) -> list[str]:
        """Each stated field's rule; the chosen workflow's own fields first, as the
        errors that matter most to a repair (and to a reason cut to its first ones)."""
        values = decision.field_values()
        chosen = registry().get(decision.workflow)
        own = chosen.routing.fields if chosen else ()
        ordered = [*own, *(f for f in registry().fields if f not in own)]
        return [e for f in ordered if f.name in values for e in f.errors(values[f.name], text)]

    return [registered, fields]
