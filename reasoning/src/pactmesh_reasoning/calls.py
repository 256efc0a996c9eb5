"""What each model call was, for whoever records it: traces, metrics, the audit timeline,
token accounting.

Every call a ``ModelRouter`` makes to one model of a chain (a fallback's included) is a
``ModelCall``: the role, the model asked and the one that answered, the prompt template,
the tokens the provider reported, the finish reasons, the raw output, or the error.

* An **observer** (``ModelCallObserver``, given to the router) sees each call start and
  end: the kit's GenAI telemetry makes a ``chat {model}`` span and metrics of it.
* A **log** (``model_calls()``) collects the calls made while it is open, in this task
  and the tasks it starts: a service opens one around the work of one request and turns
  what it holds into audit events and usage, without any global state. Logs nest: a
  call is appended to every log open around it.
* ``structured_call`` marks the calls it made with the validation outcome; a prompt's
  ``PromptTemplate`` (name and version) is recorded with each call made from it.

Plain data, no I/O: recording costs a dataclass per call.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Validation = Literal["valid", "invalid", "not_checked"]


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt the mesh builds, named and versioned so an audit can say which one a
    model was given. ``digest`` is taken from ``text`` (the template before its values
    are filled in), so a change nobody versioned still shows."""

    name: str
    version: str
    text: str

    @property
    def digest(self) -> str:
        """The first 12 hex digits of the template's SHA-256."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]


@dataclass
class ModelCall:
    """One call to one model: filled in as it goes (the router sets what it learns)."""

    role: str
    model: str
    """The spec string asked (``openai:gpt-4o-mini``, ``pactmesh-offline:default``)."""
    provider: str
    """The provider part of ``model`` (``openai``; ``pactmesh-offline``)."""
    messages: Any
    """What the model was sent (LangChain messages or a prompt)."""
    streaming: bool = False
    template: PromptTemplate | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    response_model: str | None = None
    """The model name the provider says answered (``gpt-4o-mini-2024-07-18``)."""
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    output: str | None = None
    """The answer as text: its content, or its tool calls as JSON."""
    error_type: str | None = None
    """Why it failed (``timeout``, ``rate_limited``, ``unavailable`` or an exception's
    class name); ``None`` when it answered."""
    duration_s: float = 0.0
    validation: Validation = "not_checked"
    """What ``structured_call`` made of the answer."""
    errors: tuple[str, ...] = ()
    """The validation errors of an invalid answer."""
    attempt: int = 1
    """1 for a first answer, 2 for a repair."""
    handle: Any = None
    """The observer's own state for the call (a span)."""

    @property
    def answered(self) -> bool:
        """Whether the model answered (whatever the answer was worth)."""
        return self.error_type is None

    @property
    def tokens(self) -> int:
        """Input and output tokens together (0 when the provider reported none)."""
        return (self.input_tokens or 0) + (self.output_tokens or 0)


class ModelCallObserver(Protocol):
    """Sees every model call start and end (the kit's GenAI telemetry is one)."""

    def started(self, call: ModelCall) -> AbstractContextManager[object]:
        """The call is about to be sent; the context returned is entered while the
        router waits for the model (child spans of the provider's client go under it)."""
        ...

    def ended(self, call: ModelCall) -> None:
        """The call answered or failed; ``call`` holds what is known."""
        ...


@dataclass
class ModelCallLog:
    """The calls made while the log was open, in order."""

    calls: list[ModelCall] = field(default_factory=list)

    @property
    def input_tokens(self) -> int:
        """Input tokens over every call."""
        return sum(c.input_tokens or 0 for c in self.calls)

    @property
    def output_tokens(self) -> int:
        """Output tokens over every call."""
        return sum(c.output_tokens or 0 for c in self.calls)


_LOGS: contextvars.ContextVar[tuple[ModelCallLog, ...]] = contextvars.ContextVar(
    "pactmesh_model_call_logs", default=()
)
_TEMPLATE: contextvars.ContextVar[PromptTemplate | None] = contextvars.ContextVar(
    "pactmesh_prompt_template", default=None
)


@contextmanager
def model_calls() -> Iterator[ModelCallLog]:
    """A log of the model calls made inside the block (and in tasks started in it)."""
    log = ModelCallLog()
    token = _LOGS.set((*_LOGS.get(), log))
    try:
        yield log
    finally:
        _LOGS.reset(token)


def record(call: ModelCall) -> None:
    """Append ``call`` to every open log."""
    for log in _LOGS.get():
        log.calls.append(call)


@contextmanager
def using_template(template: PromptTemplate | None) -> Iterator[None]:
    """Calls made inside the block were built from ``template``."""
    token = _TEMPLATE.set(template)
    try:
        yield
    finally:
        _TEMPLATE.reset(token)


def current_template() -> PromptTemplate | None:
    """The template of the calls being made now, if one was named."""
    return _TEMPLATE.get()
