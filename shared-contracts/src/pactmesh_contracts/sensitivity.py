"""Fields a contract marks sensitive, and redacting them wherever content is recorded.

A field is marked in its contract with ``Field(json_schema_extra=SENSITIVE_FIELD)`` (or
``sensitive()``), so the mark is part of its JSON Schema (``"x-pactmesh-sensitive":
true``) and every consumer of the schema sees it. Spans that capture tool arguments and
results, and the audit timeline, replace a marked field's value with ``REDACTED``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, Field

SENSITIVE_KEY = "x-pactmesh-sensitive"
SENSITIVE_FIELD: dict[str, Any] = {SENSITIVE_KEY: True}
"""``json_schema_extra`` of a sensitive field."""
REDACTED = "[redacted]"


def sensitive(default: Any = ..., **kwargs: Any) -> Any:
    """``Field(...)`` marked sensitive."""
    return Field(default, json_schema_extra=SENSITIVE_FIELD, **kwargs)


@cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=False)


def redact(model: type[BaseModel], data: Any) -> Any:
    """``data`` (a dump of ``model``) with the values of its sensitive fields, nested
    ones included, replaced by ``REDACTED``; anything else unchanged."""
    schema = _schema(model)
    return _walk(schema, schema.get("$defs", {}), data)


def _walk(node: dict[str, Any], defs: dict[str, Any], data: Any) -> Any:
    node = _resolve(node, defs)
    if node.get(SENSITIVE_KEY):
        return REDACTED
    if isinstance(data, dict) and "properties" in node:
        properties = node["properties"]
        return {k: _walk(properties[k], defs, v) if k in properties else v for k, v in data.items()}
    if isinstance(data, list) and isinstance(node.get("items"), dict):
        return [_walk(node["items"], defs, item) for item in data]
    for option in node.get("anyOf", []):
        if _resolve(option, defs).get(SENSITIVE_KEY):
            return REDACTED
        if "properties" in _resolve(option, defs) and isinstance(data, dict):
            return _walk(option, defs, data)
    return data


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        return {
            **defs.get(ref.rsplit("/", 1)[-1], {}),
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    return node
