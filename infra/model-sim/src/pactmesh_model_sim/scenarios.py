"""Scenarios: what a well-behaved simulated model answers.

A scenario writes the content of a plain answer, the arguments of a tool call and the
object of a JSON answer. The simulator then breaks that answer on purpose when a
request draws a malformed outcome, so a scenario only ever has to be right.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from pactmesh_model_sim.protocol import ChatCompletionRequest, ToolDef

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:\.\d+)?")
_NUMERAL = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_MONEY = re.compile(
    rf"[$€£]\s?{_NUMERAL}|{_NUMERAL}\s?(?:usd|eur|gbp|dollars?|euros?|pounds?)\b", re.I
)
_WORD = re.compile(r"[a-z0-9]+")


class Scenario(Protocol):
    """Writes the answers of a model that follows every rule."""

    def text(self, request: ChatCompletionRequest) -> str:
        """The content of a plain answer."""
        ...

    def arguments(self, request: ChatCompletionRequest, tool: ToolDef) -> dict[str, Any]:
        """The arguments of a call to ``tool``."""
        ...

    def json_object(self, request: ChatCompletionRequest, schema: dict[str, Any]) -> Any:
        """The answer to a ``json_schema`` / ``json_object`` response format."""
        ...


class FillScenario:
    """Fills each JSON Schema with plausible values taken from the last user message.

    An ``amount`` (or ``price``/``total``/``cost``) is the first sum with a currency in
    the text (``$120.50``, ``30 EUR``); other numbers (and amounts without a currency) are
    the first number in the text that fits the field's range, else the range's lower end;
    an enum takes the option sharing most words with the text; strings take the text
    itself, cut to ``maxLength``; booleans are ``false``.
    """

    def text(self, request: ChatCompletionRequest) -> str:
        return f"Simulated answer to: {request.last_user_text() or 'nothing'}"

    def arguments(self, request: ChatCompletionRequest, tool: ToolDef) -> dict[str, Any]:
        value = self.json_object(request, tool.function.parameters)
        return value if isinstance(value, dict) else {"value": value}

    def json_object(self, request: ChatCompletionRequest, schema: dict[str, Any]) -> Any:
        if not schema:
            return {"answer": self.text(request)}
        return _Filler(schema, request.last_user_text()).fill(schema, name="")


class _Filler:
    def __init__(self, root: dict[str, Any], text: str) -> None:
        self.defs: dict[str, Any] = {**root.get("definitions", {}), **root.get("$defs", {})}
        self.text = text
        self.words = set(_WORD.findall(text.lower()))

    def fill(self, schema: dict[str, Any], *, name: str) -> Any:
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self._choose(schema["enum"])
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        fillers: dict[str, Callable[[dict[str, Any], str], Any]] = {
            "object": self._object,
            "array": self._array,
            "string": self._string,
            "number": self._number,
            "integer": self._integer,
        }
        fallback = "object" if "properties" in schema else "string"
        return fillers[kind if kind in fillers else fallback](schema, name)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._resolve(self.defs.get(ref.rsplit("/", 1)[-1], {}))
        for key in ("anyOf", "oneOf", "allOf"):
            options = [o for o in schema.get(key, []) if o.get("type") != "null"]
            if options:
                return self._resolve({**options[0], **_annotations(schema)})
        return schema

    def _object(self, schema: dict[str, Any], _name: str) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        return {key: self.fill(sub, name=key) for key, sub in properties.items()}

    def _array(self, schema: dict[str, Any], name: str) -> list[Any]:
        count = max(1, int(schema.get("minItems", 1)))
        return [self.fill(schema.get("items", {}), name=name) for _ in range(count)]

    def _string(self, schema: dict[str, Any], _name: str) -> str:
        text = self.text or "simulated"
        limit = schema.get("maxLength")
        return text[:limit] if isinstance(limit, int) else text

    def _number(self, schema: dict[str, Any], name: str) -> float:
        low, high = schema.get("minimum"), schema.get("maximum")
        if any(hint in name.lower() for hint in ("amount", "price", "total", "cost")):
            found = _MONEY.search(self.text)
            if found:
                numeral = next(group for group in found.groups() if group)
                return float(numeral.replace(",", ""))
        for match in _NUMBER.findall(self.text):
            value = float(match.replace(",", ""))
            if (low is None or value >= low) and (high is None or value <= high):
                return value
        return float(low if low is not None else (high if high is not None and high < 0 else 0))

    def _integer(self, schema: dict[str, Any], name: str) -> int:
        return int(self._number(schema, name))

    def _choose(self, options: list[Any]) -> Any:
        def overlap(option: Any) -> int:
            return len(set(_WORD.findall(str(option).lower().replace("_", " "))) & self.words)

        return max(options, key=overlap)  # max keeps the first of equals


def _annotations(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k in ("description", "title", "default")}


def _registered() -> dict[str, Scenario]:
    from pactmesh_model_sim.offline import OfflineScenario  # it imports this module's Protocol

    return {"offline": OfflineScenario(), "fill": FillScenario()}


SCENARIOS: dict[str, Scenario] = _registered()
"""The scenarios every simulator has: ``offline`` (the default: answers as pactmesh's
offline model, see ``pactmesh_model_sim.offline``) and ``fill``; ``create_app`` adds
any others it is given."""
