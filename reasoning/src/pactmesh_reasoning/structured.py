"""Schema-first model outputs: parsed strictly, checked by business rules, repaired once.

``structured_call`` asks a role's chain to call one tool whose arguments are a contract
model, then parses the arguments itself, strictly: the contract must refuse unknown
fields (``extra="forbid"``), so a hallucinated or renamed field is an error, never
dropped. Business validators run on what parses. A failed answer gets one repair
attempt that carries the errors back to the model; a second failure comes back as
``needs_review`` with the raw output of both attempts, for a person to decide.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ValidationError

from pactmesh_reasoning.calls import ModelCallLog, PromptTemplate, model_calls
from pactmesh_reasoning.errors import ReasoningError
from pactmesh_reasoning.models import ModelRouter, Role, answered_by

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
Validator = Callable[[T], list[str]]
"""A business rule: the problems it finds in a parsed value (none: an empty list)."""
Status = Literal["valid", "repaired", "needs_review"]
MAX_ATTEMPTS = 2
"""The first answer and one repair."""


class SchemaNotStrict(ReasoningError):
    """A contract model given to ``structured_call`` accepts unknown fields."""

    code = "schema_not_strict"


@dataclass(frozen=True)
class StructuredAttempt:
    """One answer of the model and what was wrong with it."""

    raw: str
    """The tool-call arguments exactly as the model sent them (or its text answer)."""
    errors: tuple[str, ...]
    """Parse and business-rule errors; empty for the answer that was accepted."""
    model: str | None
    """The model (spec string) that gave this answer."""


@dataclass(frozen=True)
class StructuredResult(Generic[T]):
    """The outcome of a ``structured_call``."""

    status: Status
    """``valid`` on the first answer, ``repaired`` on the second, else ``needs_review``."""
    value: T | None
    """The parsed, validated value; ``None`` whenever ``status`` is ``needs_review``."""
    attempts: tuple[StructuredAttempt, ...]

    @property
    def raw(self) -> list[str]:
        """The raw output of every attempt, in order: what a reviewer is shown."""
        return [attempt.raw for attempt in self.attempts]

    @property
    def errors(self) -> list[str]:
        """Every attempt's errors, each prefixed with its attempt number."""
        return [
            f"attempt {number}: {error}"
            for number, attempt in enumerate(self.attempts, start=1)
            for error in attempt.errors
        ]

    @property
    def model(self) -> str | None:
        """The model that gave the last answer."""
        return self.attempts[-1].model if self.attempts else None


async def structured_call(
    role: Role,
    *,
    schema: type[T],
    prompt: str | None = None,
    messages: Sequence[BaseMessage] | None = None,
    validators: Sequence[Validator[T]] = (),
    router: ModelRouter | None = None,
    instructions: str | None = None,
    template: PromptTemplate | None = None,
) -> StructuredResult[T]:
    """Ask ``role``'s chain for a ``schema`` value (give ``prompt`` or ``messages``).

    The model is made to call a tool named after ``schema`` with the schema's fields as
    arguments. Raises ``SchemaNotStrict`` for a schema that accepts unknown fields, and
    ``AllModelsFailed`` when no model of the chain answers at all. Each call is recorded
    (``pactmesh_reasoning.calls``) as made from ``template``, with its attempt number and
    whether its answer validated.
    """
    require_strict(schema)
    conversation = _conversation(prompt=prompt, messages=messages, instructions=instructions)
    router = router or default_router()
    tool = schema.__name__
    attempts: list[StructuredAttempt] = []
    for number in range(1, MAX_ATTEMPTS + 1):
        with model_calls() as made:
            answer = await router.ainvoke(
                role, conversation, tools=[schema], tool_choice=tool, template=template
            )
        raw, value, errors = _check(answer, schema=schema, tool=tool, validators=validators)
        _mark(made, attempt=number, errors=errors, parsed=value is not None)
        attempts.append(StructuredAttempt(raw=raw, errors=tuple(errors), model=answered_by(answer)))
        if value is not None and not errors:
            status: Status = "valid" if number == 1 else "repaired"
            logger.info("structured %s: %s %s by %s", role, tool, status, attempts[-1].model)
            return StructuredResult(status=status, value=value, attempts=tuple(attempts))
        logger.warning(
            "structured %s: %s attempt %d from %s rejected: %s",
            role,
            tool,
            number,
            attempts[-1].model,
            "; ".join(errors),
        )
        conversation = [*conversation, _repair_request(tool=tool, raw=raw, errors=errors)]
    logger.warning("structured %s: %s goes to human review after %d attempts", role, tool, number)
    return StructuredResult(status="needs_review", value=None, attempts=tuple(attempts))


def _mark(made: ModelCallLog, *, attempt: int, errors: Sequence[str], parsed: bool) -> None:
    """Note the attempt on every call it made, and the verdict on the one that answered."""
    for call in made.calls:
        call.attempt = attempt
    answered = [call for call in made.calls if call.answered]
    if answered:
        answered[-1].validation = "valid" if parsed and not errors else "invalid"
        answered[-1].errors = tuple(errors)


@functools.cache
def default_router() -> ModelRouter:
    """The process's router, configured from the environment on first use."""
    return ModelRouter()


@functools.cache
def require_strict(schema: type[BaseModel]) -> None:
    """Refuse a contract whose models (the root or a nested one) accept unknown fields:
    parsing it would silently drop a hallucinated field."""
    json_schema = schema.model_json_schema()
    loose = [
        node.get("title", "?")
        for node in _object_schemas(json_schema)
        if node.get("additionalProperties") is not False
    ]
    if loose:
        raise SchemaNotStrict(
            f"{schema.__name__}: set model_config = ConfigDict(extra='forbid') on "
            f"{', '.join(loose)}, so that no field the model invents is silently dropped"
        )


def _object_schemas(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(node)
        for value in node.values():
            found += _object_schemas(value)
    elif isinstance(node, list):
        for value in node:
            found += _object_schemas(value)
    return found


def _conversation(
    *, prompt: str | None, messages: Sequence[BaseMessage] | None, instructions: str | None
) -> list[BaseMessage]:
    if (prompt is None) == (messages is None):
        raise TypeError("structured_call takes a prompt or messages (exactly one)")
    conversation: list[BaseMessage] = (
        list(messages) if messages is not None else [HumanMessage(str(prompt))]
    )
    return [SystemMessage(instructions), *conversation] if instructions else conversation


def _check(
    answer: AIMessage, *, schema: type[T], tool: str, validators: Sequence[Validator[T]]
) -> tuple[str, T | None, list[str]]:
    """The raw output, the parsed value (``None`` if it does not parse) and the errors."""
    raw, arguments, errors = _arguments(answer, tool)
    if arguments is None:
        return raw, None, errors
    try:
        value = schema.model_validate(arguments)
    except ValidationError as exc:
        return raw, None, errors + [_describe(error) for error in exc.errors(include_url=False)]
    for validator in validators:
        errors += validator(value)
    return raw, value, errors


def _arguments(answer: AIMessage, tool: str) -> tuple[str, dict[str, Any] | None, list[str]]:
    """The raw arguments of the call to ``tool``, parsed when they are a JSON object."""
    others = [c["name"] for c in [*answer.tool_calls, *answer.invalid_tool_calls]]
    errors = [
        f"called the tool {name!r}, which was not offered; the only tool is {tool!r}"
        for name in others
        if name != tool
    ]
    calls = [c for c in answer.tool_calls if c["name"] == tool]
    broken = [c for c in answer.invalid_tool_calls if c["name"] == tool]
    if len(calls) + len(broken) > 1:
        errors.append(f"called {tool!r} {len(calls) + len(broken)} times; call it once")
    if broken:
        raw = broken[0]["args"] or ""
        errors.append(f"the arguments of {tool!r} are not valid JSON: {raw!r}")
        return raw, None, errors
    if calls:
        return _raw_arguments(answer, calls[0]["id"], calls[0]["args"]), calls[0]["args"], errors
    return _from_text(answer, tool, errors)


def _raw_arguments(answer: AIMessage, call_id: str | None, parsed: dict[str, Any]) -> str:
    # OpenAI-style providers keep the arguments string as sent; others only the parse.
    for call in answer.additional_kwargs.get("tool_calls", []):
        if call.get("id") == call_id and isinstance(call.get("function"), dict):
            return str(call["function"].get("arguments", ""))
    return json.dumps(parsed)


def _from_text(
    answer: AIMessage, tool: str, errors: list[str]
) -> tuple[str, dict[str, Any] | None, list[str]]:
    """A model that answers with the JSON object in its text instead of a tool call is
    read the same way; any other answer is an error, kept whole as the raw output."""
    if not errors:
        try:
            parsed = json.loads(answer.text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return answer.text, parsed, errors
    return _render(answer), None, [*errors, f"did not call {tool!r}"]


def _render(answer: AIMessage) -> str:
    """The whole answer as text: its text, or its text and every tool call as JSON."""
    calls = [
        {"name": c["name"], "arguments": _raw_arguments(answer, c["id"], c["args"])}
        for c in answer.tool_calls
    ] + [{"name": c["name"], "arguments": c["args"]} for c in answer.invalid_tool_calls]
    if not calls:
        return answer.text
    return json.dumps({"content": answer.text, "tool_calls": calls})


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(the arguments)"
    if error["type"] == "extra_forbidden":
        return f"{location}: not a field of the schema (fields are never renamed or added)"
    if error["type"] == "missing":
        return f"{location}: required field missing"
    return f"{location}: {error['msg']} (got {error.get('input')!r})"


def _repair_request(*, tool: str, raw: str, errors: Sequence[str]) -> HumanMessage:
    problems = "\n".join(f"- {error}" for error in errors)
    return HumanMessage(
        f"Your previous answer could not be used.\nIt was: {raw}\nThe problems:\n"
        f"{problems}\nCall {tool} again with corrected arguments: exactly the fields of "
        "its schema, none renamed and none added, with values that fix every problem above."
    )
