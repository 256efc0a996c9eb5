"""Validating a record's exact bytes against its topic's contract."""

from __future__ import annotations

import json
from typing import Any

from pactmesh_contracts.events import DeadLetterCode
from pactmesh_contracts.topics import Topic
from pydantic import ValidationError

from pactmesh_kit.errors import InvalidMessage
from pactmesh_kit.kafka._internal.batch import Record


def decode(topic: Topic, record: Record) -> Any:
    """``record``'s value as ``topic``'s record type; ``InvalidMessage`` if refused.

    Validation happens here, on the exact bytes received, rather than in a handler's
    signature, so that a dead letter can carry those bytes and pydantic's errors.
    """
    try:
        return topic.adapter.validate_json(record.value or b"")
    except ValidationError as exc:
        errors = json.loads(exc.json(include_url=False, include_context=False))
        raise InvalidMessage(error_code(exc), str(exc), errors) from exc


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
