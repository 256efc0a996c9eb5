"""The offline model: a deterministic stand-in for a chat model, for a mesh with no provider.

``OfflineChatModel`` is a LangChain chat model (``pactmesh-offline``) with tool calling,
``with_structured_output`` (through tool calling, as for any provider) and token
streaming, so code written against it runs unchanged against a real model. It is **not
an LLM**: it reads nothing but the conversation, calls no network, and answers by the
heuristics below, the same answer for the same input every time.

Tool calls (and structured output). The tool is the one ``tool_choice`` names, else the
one whose name and description share most words with the last user message. Its JSON
Schema is filled from that message:

* an option (``enum``/``Literal``): the label an ``ExampleClassifier`` gives the text
  when the model has one whose labels cover the options; else the option sharing most
  words with the text (the first on a tie);
* ``confidence``/``score``/``probability``: the classifier's confidence; without one,
  0.5 when some option matched a word and 0.0 when none did;
* ``amount``/``price``/``total``/``cost``: the first amount with a currency (``$1,200.50``,
  ``30 EUR``), else the first number;
  other numbers: the first number that fits the field's range, else its lower bound;
* ``reason``/``rationale``/``explanation``/``justification``: how the option was chosen;
* ``email``: the first e-mail address; names ending in ``id``, ``number``, ``code``,
  ``reference`` or ``sku``: the first token holding a digit (``ORD-4411``); ``date``: the
  first ISO date; fields with nothing found take their default, ``null`` when nullable,
  else ``""``;
* other strings: the text itself (cut to ``maxLength``); booleans: whether the field's
  name occurs in the text; arrays: one item (or ``minItems``); objects: every property.

Free text. A short acknowledgement built from the first sentence of the last user
message, or of the last tool result when the conversation ends with one, streamed word
by word.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, model_validator

from pactmesh_reasoning.classifier import Classification, ExampleClassifier

logger = logging.getLogger(__name__)

OFFLINE_LLM_TYPE = "pactmesh-offline"
_WORD = re.compile(r"[a-z0-9]+")
_NUMERAL = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_MONEY = re.compile(
    rf"[$€£]\s?{_NUMERAL}|{_NUMERAL}\s?(?:usd|eur|gbp|dollars?|euros?|pounds?)\b", re.I
)
_AMOUNT = re.compile(_NUMERAL)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TOKEN = re.compile(r"[^\s,;:()\"'$€£]+")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_CONFIDENCE_NAMES = ("confidence", "score", "probability", "certainty")
_AMOUNT_NAMES = ("amount", "price", "total", "cost")
_REASON_NAMES = ("reason", "rationale", "explanation", "justification")
_ID_SUFFIXES = ("id", "number", "code", "reference", "sku")
_FORCING = {None, "auto", "any", "required", True}


class OfflineChatModel(BaseChatModel):
    """``pactmesh-offline``: deterministic answers from heuristics; see the module doc."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_name: str = "pactmesh-offline:default"
    """How the model is named in logs and in ``response_metadata``."""
    classifier: ExampleClassifier | None = None
    """Picks options by nearest example; without one, options are picked by words."""

    @model_validator(mode="after")
    def _announce_offline(self) -> OfflineChatModel:
        # A validator, not model_post_init, which LangChain keeps for its own use.
        logger.info(
            "offline model %s in use: a deterministic stand-in (heuristics%s), not an LLM",
            self.model_name,
            ", nearest-example classifier" if self.classifier else "",
        )
        return self

    @property
    def _llm_type(self) -> str:
        return OFFLINE_LLM_TYPE

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer tools (anything ``convert_to_openai_tool`` takes); ``tool_choice`` is a
        tool name, ``"auto"``, ``"any"``/``"required"``/``True``, ``"none"``, or OpenAI's
        ``{"type": "function", "function": {"name": ...}}``."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        turn = _Turn(messages, kwargs)
        classification = None
        if self.classifier is not None and turn.options(self.classifier.labels):
            among = turn.options(self.classifier.labels)
            classification = self.classifier.classify(turn.text, among=among)
        return self._result(turn, classification)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        turn = _Turn(messages, kwargs)
        classification = None
        if self.classifier is not None and turn.options(self.classifier.labels):
            among = turn.options(self.classifier.labels)
            classification = await self.classifier.aclassify(turn.text, among=among)
        return self._result(turn, classification)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        result = self._generate(messages, stop, run_manager, **kwargs)
        yield from _chunks(result.generations[0].message)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        result = await self._agenerate(messages, stop, run_manager, **kwargs)
        for chunk in _chunks(result.generations[0].message):
            if run_manager is not None and isinstance(chunk.message.content, str):
                await run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk

    def _result(self, turn: _Turn, classification: Classification | None) -> ChatResult:
        tool = turn.tool()
        metadata = {"model_name": self.model_name, "model_provider": OFFLINE_LLM_TYPE}
        if tool is None:
            text = _acknowledgement(turn.reply_to)
            message = AIMessage(
                content=text, response_metadata={**metadata, "finish_reason": "stop"}
            )
        else:
            function = tool["function"]
            filler = _Filler(function.get("parameters", {}), turn.text, classification)
            arguments = filler.fill_root()
            call_id = (
                "call_offline_"
                + hashlib.sha1(
                    json.dumps([function["name"], arguments], sort_keys=True).encode()
                ).hexdigest()[:12]
            )
            message = AIMessage(
                content="",
                tool_calls=[{"name": function["name"], "args": arguments, "id": call_id}],
                response_metadata={**metadata, "finish_reason": "tool_calls"},
            )
        prompt_words = sum(len(_text(m.content).split()) for m in turn.messages)
        output_words = len(_text(message.content).split()) + sum(
            len(json.dumps(c["args"]).split()) for c in message.tool_calls
        )
        message.usage_metadata = {
            "input_tokens": prompt_words,
            "output_tokens": output_words,
            "total_tokens": prompt_words + output_words,
        }
        return ChatResult(generations=[ChatGeneration(message=message)])


class _Turn:
    """What the model is asked: the conversation, the tools offered and the choice."""

    def __init__(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> None:
        self.messages = messages
        self.tools: list[dict[str, Any]] = kwargs.get("tools") or []
        self.tool_choice: Any = kwargs.get("tool_choice")
        humans = [m for m in messages if isinstance(m, HumanMessage)]
        self.text = _text(humans[-1].content) if humans else ""
        last = messages[-1] if messages else None
        self.after_tool = isinstance(last, ToolMessage)
        self.reply_to = _text(last.content) if isinstance(last, ToolMessage) else self.text

    def tool(self) -> dict[str, Any] | None:
        """The tool to call, or ``None`` for a text answer."""
        if not self.tools or self.tool_choice == "none" or self.tool_choice is False:
            return None
        named = self._named_choice()
        if named is not None:
            for tool in self.tools:
                if tool["function"]["name"] == named:
                    return tool
            raise ValueError(f"tool_choice names {named!r}, which is not among the tools")
        if self.after_tool and self.tool_choice in (None, "auto"):
            return None  # the tool has answered: now the model answers in text
        words = set(_WORD.findall(self.text.lower()))

        def overlap(tool: dict[str, Any]) -> int:
            function = tool["function"]
            about = f"{function['name']} {function.get('description', '')}".replace("_", " ")
            return len(set(_WORD.findall(about.lower())) & words)

        return max(self.tools, key=overlap)

    def options(self, labels: Sequence[str]) -> list[str]:
        """The classifier labels that are options of an enum in the chosen tool."""
        tool = self.tool()
        if tool is None:
            return []
        found = _enums(tool["function"].get("parameters", {}))
        return [label for label in labels if any(label in options for options in found)]

    def _named_choice(self) -> str | None:
        choice = self.tool_choice
        if isinstance(choice, dict):
            name = choice.get("function", {}).get("name") or choice.get("name")
            return str(name) if name else None
        if isinstance(choice, str) and choice not in _FORCING and choice != "none":
            return choice
        return None


def _enums(schema: dict[str, Any]) -> list[list[Any]]:
    """Every ``enum`` list anywhere in a JSON Schema (``$defs`` included)."""
    found: list[list[Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("enum"), list):
                found.append(node["enum"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


class _Nothing:
    """No evidence for a field in the text."""


_NOTHING = _Nothing()


class _Filler:
    """Fills a JSON Schema from a text; see the module doc for the rules."""

    def __init__(
        self, root: dict[str, Any], text: str, classification: Classification | None
    ) -> None:
        self.root = root
        self.defs: dict[str, Any] = {**root.get("definitions", {}), **root.get("$defs", {})}
        self.text = text
        self.words = set(_WORD.findall(text.lower()))
        self.classification = classification
        self.matched: list[str] | None = None
        """Words of the text that picked an option (``None`` until one is picked)."""

    def fill_root(self) -> dict[str, Any]:
        value = self.fill(self.root, name="")
        return value if isinstance(value, dict) else {}

    def fill(self, schema: dict[str, Any], *, name: str) -> Any:
        nullable = _nullable(schema)
        schema = self._resolve(schema)
        value = self._value(schema, name)
        if not isinstance(value, _Nothing):
            return value
        if "default" in schema:
            return schema["default"]
        return None if nullable else ""

    def _value(self, schema: dict[str, Any], name: str) -> Any:
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self._option(schema["enum"])
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        fillers: dict[str, Callable[[dict[str, Any], str], Any]] = {
            "object": self._object,
            "array": self._array,
            "string": self._string,
            "number": self._number,
            "integer": lambda s, n: _as_int(self._number(s, n)),
            "boolean": lambda _s, n: _words_of(n) <= self.words,
            "null": lambda _s, _n: None,
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
                extra = {k: v for k, v in schema.items() if k in ("default", "description")}
                return {**self._resolve(options[0]), **extra}
        return schema

    def _object(self, schema: dict[str, Any], _name: str) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        # Options first: a reason or a confidence describes the choice made.
        order = sorted(properties, key=lambda key: not self._is_choice(properties[key]))
        filled = {key: self.fill(properties[key], name=key) for key in order}
        return {key: filled[key] for key in properties}

    def _is_choice(self, schema: dict[str, Any]) -> bool:
        return "enum" in self._resolve(schema)

    def _array(self, schema: dict[str, Any], name: str) -> list[Any]:
        count = max(1, int(schema.get("minItems", 1)))
        return [self.fill(schema.get("items", {}), name=name) for _ in range(count)]

    def _string(self, schema: dict[str, Any], name: str) -> Any:
        lowered = name.lower()
        if any(hint in lowered for hint in _REASON_NAMES):
            return self._reason()
        if "email" in lowered:
            return _first(_EMAIL, self.text)
        if "date" in lowered or schema.get("format") in ("date", "date-time"):
            return _first(_DATE, self.text)
        if lowered.endswith(_ID_SUFFIXES):
            return _identifier(self.text)
        limit = schema.get("maxLength")
        return self.text[:limit] if isinstance(limit, int) else self.text

    def _number(self, schema: dict[str, Any], name: str) -> Any:
        low, high = schema.get("minimum"), schema.get("maximum")
        lowered = name.lower()
        if any(hint in lowered for hint in _CONFIDENCE_NAMES):
            value = self._confidence()
            return min(max(value, low if low is not None else value), high or value)
        if any(hint in lowered for hint in _AMOUNT_NAMES):
            found = _MONEY.search(self.text) or _AMOUNT.search(self.text)
            if found is None:
                return _NOTHING
            numeral = next(group for group in found.groups() if group)
            return float(numeral.replace(",", ""))
        for match in _NUMBER.findall(self.text):
            value = float(match)
            if (low is None or value >= low) and (high is None or value <= high):
                return value
        return float(low) if low is not None else _NOTHING

    def _option(self, options: list[Any]) -> Any:
        if self.classification is not None and self.classification.label in options:
            return self.classification.label

        def overlap(option: Any) -> int:
            return len(_words_of(str(option)) & self.words)

        best = max(options, key=overlap)  # the first of equals
        self.matched = sorted(_words_of(str(best)) & self.words)
        return best

    def _confidence(self) -> float:
        if self.classification is not None:
            return self.classification.confidence
        return 0.5 if self.matched else 0.0

    def _reason(self) -> str:
        """Why an option was picked; with no option in the schema, the text itself (a
        refund's reason, say, is what the customer wrote)."""
        found = self.classification
        if found is not None:
            return (
                f"offline model: nearest example ({found.similarity:.2f} cosine) "
                f"is {found.example!r}, labelled {found.label!r}"
            )
        if self.matched:
            return f"offline model: the text mentions {', '.join(self.matched)}"
        if self.matched is not None:
            return "offline model: no keyword of any option in the text; first option taken"
        return self.text


def _nullable(schema: dict[str, Any]) -> bool:
    kinds = schema.get("type")
    if kinds == "null" or (isinstance(kinds, list) and "null" in kinds):
        return True
    return any(o.get("type") == "null" for o in schema.get("anyOf", []))


def _words_of(text: str) -> set[str]:
    return set(_WORD.findall(text.lower().replace("_", " ")))


def _as_int(value: Any) -> Any:
    return value if isinstance(value, _Nothing) else int(value)


def _identifier(text: str) -> Any:
    """The first token mixing letters and digits (``ORD-4411``), else the first run of
    three or more digits that is not an amount (``order 4411``)."""
    tokens = [token.strip(".!?#") for token in _TOKEN.findall(text)]
    for token in tokens:
        if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
            return token
    for index, token in enumerate(_TOKEN.finditer(text)):
        start = token.start()
        if tokens[index].isdigit() and len(tokens[index]) >= 3 and text[start - 1 : start] != "$":
            return tokens[index]
    return _NOTHING


def _first(pattern: re.Pattern[str], text: str) -> Any:
    found = pattern.search(text)
    return found.group(0) if found else _NOTHING


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else str(p.get("text", "")) for p in content]
        return " ".join(part for part in parts if part)
    return ""


def _acknowledgement(text: str) -> str:
    first = _SENTENCE_END.split(text.strip(), maxsplit=1)[0] if text.strip() else ""
    topic = first[:160].rstrip().rstrip(".!?") or "your request"
    return (
        f'Thank you for your message about "{topic}". We have received it and will '
        "follow up with the details shortly."
    )


def _chunks(message: BaseMessage) -> Iterator[ChatGenerationChunk]:
    """A message as stream chunks: its text word by word (each word with the space
    before it), or its tool calls in one chunk; metadata on the last chunk."""
    assert isinstance(message, AIMessage)
    metadata, usage = message.response_metadata, message.usage_metadata
    if message.tool_calls:
        pieces = [
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(message.tool_calls)
        ]
        chunk = AIMessageChunk(
            content="",
            tool_call_chunks=pieces,
            response_metadata=metadata,
            usage_metadata=usage,
        )
        yield ChatGenerationChunk(message=chunk)
        return
    words = _text(message.content).split(" ")
    for index, word in enumerate(words):
        piece = word if index == 0 else f" {word}"
        last = index == len(words) - 1
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=piece,
                response_metadata=metadata if last else {},
                usage_metadata=usage if last else None,
            )
        )
