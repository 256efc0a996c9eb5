"""Turning what a service did into the timeline's audit events (``pactmesh_contracts``'
``Audit*`` payloads on the ``audit`` topic).

The model calls a service made for a request come from the reasoning layer's log
(``pactmesh_reasoning.calls.model_calls``); they are read here through the attributes
only, so the kit needs no reasoning package.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from pactmesh_contracts.events import AuditModelCalled, PromptRef
from pactmesh_contracts.usage import PriceTable, Usage
from pydantic import BaseModel

from pactmesh_kit.genai import ModelCallView as RecordedCall

RAW_LIMIT = 20_000
"""Characters of a model's raw answer an audit event keeps."""


A = TypeVar("A", bound=BaseModel)


def audit_of(kind: type[A], source: BaseModel, **more: Any) -> A:
    """An audit event of ``kind`` carrying the fields it shares with ``source`` (the event
    or decision it records), and ``more``."""
    shared = set(kind.model_fields) & set(type(source).model_fields) - {"type"}
    return kind.model_validate({**source.model_dump(include=shared), **more})


def usage_of(call: RecordedCall, prices: PriceTable) -> Usage:
    """One call's tokens, priced."""
    return prices.usage(
        call.model, input_tokens=call.input_tokens or 0, output_tokens=call.output_tokens or 0
    )


def total_usage(calls: Iterable[RecordedCall], prices: PriceTable) -> Usage:
    """The calls' tokens and cost together."""
    total = Usage()
    for call in calls:
        total = total + usage_of(call, prices)
    return total


def model_called(
    call: RecordedCall, *, service: str, workflow: str | None, prices: PriceTable
) -> AuditModelCalled:
    """The audit event of one model call."""
    template = call.template
    prompt = (
        PromptRef(name=template.name, version=template.version, digest=template.digest)
        if template is not None
        else None
    )
    return AuditModelCalled(
        service=service,
        role=call.role,
        workflow=workflow,
        prompt=prompt,
        model=call.model[:200],
        response_model=(call.response_model or None) and call.response_model[:200],
        attempt=max(1, call.attempt),
        validation=call.validation,
        errors=[error[:2000] for error in call.errors[:50]],
        raw_output=None if call.output is None else call.output[:RAW_LIMIT],
        error_type=call.error_type and call.error_type[:200],
        finish_reasons=[reason[:64] for reason in call.finish_reasons[:16]],
        usage=usage_of(call, prices),
        duration_ms=max(0, round(call.duration_s * 1000)),
    )
