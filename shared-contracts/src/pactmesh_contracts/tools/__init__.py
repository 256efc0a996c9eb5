"""Tool contracts: each tool's typed arguments and result, and how it is reached.

A workflow calls a tool through its contract (``ToolContract[Args, Result]``), so a
misspelt or mistyped argument fails type checking and validation before any call is
sent; the tools service binds every contract to its backend generically (an HTTP
request built from ``Endpoint``), so a new tool is a new contract and no service code.
One module per backend; ``ToolContract`` and the shared field types live here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Generic, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""An ISO 4217 code, for example ``USD``."""
Amount = Annotated[float, Field(gt=0, le=1_000_000_000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class ToolArguments(BaseModel):
    """Base of every tool's arguments: strict, closed and immutable, so a call carries
    exactly the fields its contract names, with their types."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True
    )


class ToolOutput(BaseModel):
    """Base of every tool's result: closed, so a backend answering outside its contract
    is caught by the tools service instead of reaching a workflow."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


A = TypeVar("A", bound=ToolArguments)
R = TypeVar("R", bound=ToolOutput)


@dataclass(frozen=True)
class Endpoint:
    """Where and how a tool's backend is called over HTTP.

    ``backend`` and ``path`` may name arguments in braces (``carriers.{carrier}``,
    ``/crm/orders/{order_id}``): their values are filled in, and those arguments are not
    sent again. The other arguments go in the query string of a ``GET`` and in the JSON
    body otherwise, under their serialization aliases.
    """

    backend: str
    """The backend's name, as the sandbox's fault switches and the tools service's
    circuit breakers know it."""
    method: Literal["GET", "POST", "PUT"]
    path: str

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The arguments named in ``backend`` or ``path``."""
        names = _PLACEHOLDER.findall(f"{self.backend} {self.path}")
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class ToolContract(Generic[A, R]):
    """One tool: its name, what it takes and returns, and how it is reached."""

    name: str
    """Namespaced by backend: ``kb.search``."""
    description: str
    arguments: type[A]
    result: type[R]
    endpoint: Endpoint
    side_effecting: bool = False
    """Sends the call's idempotency key, so the backend performs it at most once."""

    def __post_init__(self) -> None:
        missing = set(self.endpoint.placeholders) - set(self.arguments.model_fields)
        if missing:
            raise ValueError(f"{self.name}: the endpoint names unknown arguments {missing}")

    @cached_property
    def backends(self) -> tuple[str, ...]:
        """Every backend this tool may reach: one per value of a placeholder in the
        backend's name (which must then be a ``Literal`` argument)."""
        names = _PLACEHOLDER.findall(self.endpoint.backend)
        found = [self.endpoint.backend]
        for name in names:
            choices = _literal_choices(self.arguments, name)
            found = [b.replace(f"{{{name}}}", str(c)) for b in found for c in choices]
        return tuple(found)


def _literal_choices(model: type[BaseModel], name: str) -> tuple[object, ...]:
    annotation = model.model_fields[name].annotation
    if get_origin(annotation) is not Literal:
        raise ValueError(f"{model.__name__}.{name} names a backend, so it must be a Literal")
    return get_args(annotation)
