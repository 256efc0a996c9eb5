"""The envelope every pactmesh event travels in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Self, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from pactmesh_contracts.ids import uuid7

TenantId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
"""A tenant slug: lowercase letters, digits and dashes, at most 63 characters."""

Scope = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.:-]{0,127}$")]
Role = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]


class Principal(BaseModel):
    """Who an event acts for: the subject, its roles and scopes, as the edge verified them."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    subject: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    """Stable identifier of the user or system on whose behalf the mesh acts."""
    roles: tuple[Role, ...] = ()
    """Roles granted to the subject (for example ``requester``, ``reviewer``)."""
    scopes: tuple[Scope, ...] = ()
    """OAuth2-style scopes granted to the subject (for example ``workflow:refund``)."""


class Payload(BaseModel):
    """Base of every event payload: strict, immutable, tagged with ``<name>.v<N>``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    type: str

    @classmethod
    def event_type(cls) -> str:
        """The literal tag of this payload class, for example ``request.accepted.v1``."""
        default = cls.model_fields["type"].default
        if not isinstance(default, str):
            raise TypeError(f"{cls.__name__}.type must default to its literal tag")
        return default


P = TypeVar("P", bound=Payload)


class Envelope(BaseModel, Generic[P]):
    """Metadata common to every event, around one typed payload.

    ``type`` repeats the payload's tag so that a consumer (or a dead-letter tool) can
    route or report an event without knowing its payload schema; the two must agree.
    Transport facts (trace context, content type) travel in Kafka headers, not here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    event_id: uuid.UUID = Field(default_factory=uuid7)
    """Unique, time-sortable (UUIDv7) id; consumers deduplicate on it."""
    type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]*\.v[0-9]+$")]
    """Event type and version, ``<name>.v<N>``; equal to ``payload.type``."""
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    """When the producer created the event (timezone-aware)."""
    workflow_id: uuid.UUID
    """The request/workflow this event belongs to; also the Kafka message key."""
    causation_id: uuid.UUID | None = None
    """``event_id`` of the event that caused this one; ``None`` for the first event."""
    tenant: TenantId
    """Tenant that owns the workflow; data never crosses tenants."""
    principal: Principal
    """Who the workflow acts for; checked again wherever an action is taken."""
    payload: P
    """The typed event body."""

    @model_validator(mode="after")
    def _type_matches_payload(self) -> Self:
        if self.type != self.payload.type:
            raise ValueError(f"envelope type {self.type!r} != payload type {self.payload.type!r}")
        return self

    @property
    def version(self) -> int:
        """The payload's schema version (the ``N`` of ``.vN``)."""
        return int(self.type.rsplit(".v", 1)[1])

    @property
    def key(self) -> bytes:
        """The Kafka message key: the workflow id, so one workflow stays on one partition."""
        return str(self.workflow_id).encode()

    def follow(self, payload: Payload, **changes: Any) -> Envelope[Any]:
        """A new event caused by this one: same workflow, tenant and principal."""
        fields: dict[str, Any] = {
            "type": payload.type,
            "workflow_id": self.workflow_id,
            "causation_id": self.event_id,
            "tenant": self.tenant,
            "principal": self.principal,
            "payload": payload,
        }
        fields.update(changes)
        return Envelope[Any](**fields)


def new_event(
    payload: Payload,
    *,
    workflow_id: uuid.UUID,
    tenant: str,
    principal: Principal,
    causation_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """Wrap ``payload`` in a fresh envelope (the first event of a causal chain, usually)."""
    return Envelope[Any](
        type=payload.type,
        workflow_id=workflow_id,
        causation_id=causation_id,
        tenant=tenant,
        principal=principal,
        payload=payload,
    )
