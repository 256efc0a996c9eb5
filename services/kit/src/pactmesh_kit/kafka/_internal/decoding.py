"""Validating a record's exact bytes against its topic's contract."""

from __future__ import annotations

import json
from typing import Any

from pactmesh_contracts.events import DeadLetterCode
from pactmesh_contracts.topics import Topic
from pydantic import ValidationError

from pactmesh_kit.errors import InvalidMessage
from pactmesh_kit.kafka._internal.batch import Record

MAX_ERRORS = 20
"""Field errors a dead letter keeps (a list of 10,000 bad items fails 10,000 times)."""
MAX_MESSAGE = 300


def decode(topic: Topic, record: Record) -> Any:
    """``record``'s value as ``topic``'s record type; ``InvalidMessage`` if refused.

    Validation happens here, on the exact bytes received, rather than in a handler's
    signature, so that a dead letter can carry those bytes and pydantic's errors: the
    first ``MAX_ERRORS`` of them, without the input they refer to (the original bytes are
    in the dead letter once, not repeated in every error).
    """
    try:
        return topic.adapter.validate_json(record.value or b"")
    except ValidationError as exc:
        raw = exc.json(include_url=False, include_context=False, include_input=False)
        errors = json.loads(raw)[:MAX_ERRORS]
        raise InvalidMessage(error_code(exc), describe(exc, errors), errors) from exc


def describe(exc: ValidationError, errors: list[dict[str, Any]]) -> str:
    """pydantic's summary of ``exc``, without the input values it would quote."""
    lines = [f"{exc.error_count()} validation error(s) for {exc.title}"]
    for error in errors:
        where = ".".join(str(part) for part in error["loc"]) or "(the message)"
        lines.append(f"{where}: {error['msg'][:MAX_MESSAGE]} [type={error['type']}]")
    if exc.error_count() > len(errors):
        lines.append(f"... and {exc.error_count() - len(errors)} more")
    return "\n".join(lines)


def error_code(exc: ValidationError) -> DeadLetterCode:
    """``undecodable`` (not JSON), ``unknown_type`` (a type tag this topic does not
    carry) or ``invalid`` (anything else the contract refuses)."""
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        return "undecodable"
    if any(_is_type_tag_error(e) for e in errors):
        return "unknown_type"
    return "invalid"


def _is_type_tag_error(error: Any) -> bool:
    if error["type"] == "union_tag_invalid":
        return True
    return bool(error["type"] == "literal_error" and error["loc"] and error["loc"][-1] == "type")
