"""Models as configuration: per role, a chain of chat models tried in order.

Each role (``routing``, ``extraction``, ``drafting``) names a primary model and its
fallbacks as LangChain ``init_chat_model`` strings with their settings, so swapping a
provider is a settings change::

    PACTMESH_MODELS_JSON='{"routing": {"primary": {"model": "openai:gpt-4o-mini",
        "latency_budget_s": 2}, "fallbacks": [{"model": "pactmesh-offline:default"}]}}'

or the same document in a JSON or TOML file named by ``PACTMESH_MODELS_FILE``. A role
left out, or no configuration at all, uses ``pactmesh-offline:default``: the offline
model of ``pactmesh_reasoning.offline``, a deterministic stand-in (not an LLM) that
answers through the same interfaces, so the mesh runs with no provider.

Every model of a chain runs under its latency budget. A model that runs over it, that
answers 429, or that fails (5xx, connection, any provider error) hands the call to the
next one (LangChain's ``with_fallbacks``). A 429 whose ``Retry-After`` fits in what is
left of the budget is waited out on the same model first: the wait is an ``asyncio``
sleep of that one call, so every other call goes on meanwhile.

A streamed answer can fail at any point, after its first pieces too: the connection
drops, or the stream stalls (no piece within the budget). It then moves to the next
model like any other failure, and starts over there: ``ModelRouter.astream_answer``
marks the first piece of the new answer ``restarted``, so a caller showing the pieces
as they come knows to discard what the failed model wrote.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from langchain_core.exceptions import ModelError, ModelRateLimitError, ModelTimeoutError
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr, field_validator

from pactmesh_reasoning.calls import (
    ModelCall,
    ModelCallObserver,
    PromptTemplate,
    current_template,
    record,
    using_template,
)
from pactmesh_reasoning.errors import ReasoningError

logger = logging.getLogger(__name__)

Role = Literal["routing", "extraction", "drafting"]
"""What a model is used for; each role has its own chain."""
ROLES: tuple[Role, ...] = get_args(Role)
OFFLINE_PROVIDER = "pactmesh-offline"
OFFLINE_MODEL = f"{OFFLINE_PROVIDER}:default"
"""The model every role uses when none is configured."""
MODELS_JSON_ENV = "PACTMESH_MODELS_JSON"
MODELS_FILE_ENV = "PACTMESH_MODELS_FILE"
ANSWERED_BY = "pactmesh_model"
TEMPLATE_KEY = "pactmesh_prompt_template"
"""Run-config metadata key naming the ``PromptTemplate`` a streamed call was built from."""
"""``response_metadata`` key naming the model (its spec string) that answered."""
_PLACEHOLDER_KEYS = {"", "changeme", "change-me", "secret", "your-api-key", "xxx", "sk-..."}

FailureReason = Literal["timeout", "rate_limited", "unavailable"]


class ModelConfigError(ReasoningError):
    """The models configuration cannot be read; the message says which setting to fix."""

    code = "model_config_invalid"


class ModelCallFailed(ReasoningError):
    """One model of a chain did not answer; the chain moves on to the next."""

    code = "model_call_failed"

    def __init__(self, *, model: str, reason: FailureReason, detail: str) -> None:
        super().__init__(f"{model}: {reason}: {detail}")
        self.model = model
        self.reason = reason


class AnsweredInPart(ModelCallFailed):
    """A model's streamed answer failed after its first pieces (the connection dropped,
    or it stalled past its budget): the answer starts over on the next model."""

    code = "model_answer_broke_off"


@dataclass(frozen=True)
class StreamPiece:
    """A piece of a streamed answer, and the model writing it."""

    text: str
    model: str | None
    """The model spec string answering (``None`` only when the chain cannot say)."""
    restarted: bool = False
    """The model that wrote the pieces before this one failed mid-answer, and ``model``
    starts the answer over from here: discard everything before this piece."""


class AllModelsFailed(ReasoningError):
    """Every model of a role's chain failed; retry later or raise the budgets."""

    code = "models_unavailable"

    def __init__(self, *, role: Role, models: Sequence[str]) -> None:
        super().__init__(f"no model answered for {role}: tried {', '.join(models)}")
        self.role = role
        self.models = list(models)


class ModelSpec(BaseModel):
    """One chat model and its settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = OFFLINE_MODEL
    """An ``init_chat_model`` string, ``provider:model`` (``openai:gpt-4o-mini``,
    ``anthropic:claude-sonnet-4-5``), or ``pactmesh-offline:<name>`` for the offline model."""
    base_url: str | None = None
    """For OpenAI-compatible servers (a gateway, vLLM, the model simulator)."""
    api_key: SecretStr | None = None
    """Prefer ``api_key_env``, or the provider's own variable (``OPENAI_API_KEY``), to a
    key written into configuration."""
    api_key_env: str | None = None
    """Name of the environment variable that holds the key."""
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    latency_budget_s: float = Field(30.0, gt=0)
    """Longest wait for this model's answer (its first chunk when streaming), including
    any ``Retry-After`` wait; beyond it the call moves to the next model."""
    max_retries: int = Field(0, ge=0)
    """Retries inside the provider's client. 0 by default, so the chain, not the client,
    decides what happens after a failure."""
    params: dict[str, JsonValue] = Field(default_factory=dict)
    """Further keyword arguments for the provider's chat model class."""

    @field_validator("api_key")
    @classmethod
    def _no_placeholder(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and key.get_secret_value().strip().lower() in _PLACEHOLDER_KEYS:
            raise ValueError("api_key is a placeholder: set a real key or use api_key_env")
        return key

    @property
    def provider(self) -> str:
        """The part of ``model`` before the colon ("" when it has none)."""
        provider, sep, _ = self.model.partition(":")
        return provider if sep else ""

    @property
    def offline(self) -> bool:
        """Whether this is the offline model."""
        return self.provider == OFFLINE_PROVIDER


class RoleConfig(BaseModel):
    """A role's models: the primary, then the fallbacks in the order they are tried."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    primary: ModelSpec = ModelSpec()
    fallbacks: list[ModelSpec] = Field(default_factory=list)

    @property
    def chain(self) -> list[ModelSpec]:
        """Every model of the role, in the order they are tried."""
        return [self.primary, *self.fallbacks]


class ModelsConfig(BaseModel):
    """The models of every role; a role left out uses the offline model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    routing: RoleConfig = RoleConfig()
    """Picks a request's workflow: short structured answers, tight latency."""
    extraction: RoleConfig = RoleConfig()
    """Turns text into the arguments of a contract (an order, a refund)."""
    drafting: RoleConfig = RoleConfig()
    """Writes free text for people (replies, summaries)."""

    def role(self, role: Role) -> RoleConfig:
        """The configuration of ``role``."""
        config: RoleConfig = getattr(self, role)
        return config


def load_models_config(environ: Mapping[str, str] | None = None) -> ModelsConfig:
    """The models configuration from ``PACTMESH_MODELS_JSON`` (a JSON document) or
    ``PACTMESH_MODELS_FILE`` (a ``.json`` or ``.toml`` file); the offline model for
    every role when neither is set."""
    env = os.environ if environ is None else environ
    text, path = env.get(MODELS_JSON_ENV, "").strip(), env.get(MODELS_FILE_ENV, "").strip()
    if text and path:
        raise ModelConfigError(f"set {MODELS_JSON_ENV} or {MODELS_FILE_ENV}, not both")
    if not text and not path:
        logger.info(
            "models: none configured; every role uses the offline model %s "
            "(a deterministic stand-in, not an LLM)",
            OFFLINE_MODEL,
        )
        return ModelsConfig()
    source = MODELS_JSON_ENV if text else path
    try:
        data = json.loads(text) if text else _read_file(Path(path))
        config = ModelsConfig.model_validate(data)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ModelConfigError(f"models configuration in {source} is invalid: {exc}") from exc
    for role in ROLES:
        chain = " -> ".join(spec.model for spec in config.role(role).chain)
        logger.info("models: %s uses %s", role, chain)
    return config


def _read_file(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)


@dataclass
class ModelCounts:
    """What happened to the calls of one model since the counters were reset."""

    calls: int = 0
    answered: int = 0
    timeouts: int = 0
    rate_limited: int = 0
    failed: int = 0
    retry_waits: int = 0
    """429s waited out (``Retry-After``) on the same model."""
    fell_back: int = 0
    """Calls this model handed to the next one of its chain."""


class CallCounters:
    """In-process counters of model calls, by model spec string."""

    def __init__(self) -> None:
        self._counts: dict[str, ModelCounts] = {}

    def add(self, model: str, what: str) -> None:
        """Add one to ``what`` (a ``ModelCounts`` field) for ``model``."""
        counts = self._counts.setdefault(model, ModelCounts())
        setattr(counts, what, getattr(counts, what) + 1)

    def snapshot(self) -> dict[str, ModelCounts]:
        """A copy of the counters."""
        return {m: ModelCounts(**asdict(c)) for m, c in self._counts.items()}

    def reset(self) -> None:
        """Back to zero."""
        self._counts.clear()


_COUNTERS = CallCounters()


def model_call_counts() -> dict[str, ModelCounts]:
    """Calls, answers, failures, ``Retry-After`` waits and fallbacks per model, counted by
    every ``ModelRouter`` of this process that was not given counters of its own."""
    return _COUNTERS.snapshot()


def answered_by(message: BaseMessage) -> str | None:
    """The model spec string of the model that produced ``message`` (via a router)."""
    value = message.response_metadata.get(ANSWERED_BY)
    return value if isinstance(value, str) else None


def failure_reason(exc: BaseException) -> FailureReason | None:
    """Whether ``exc`` means the model failed (and which way), rather than a bug.

    LangChain's provider-neutral ``ModelError`` family comes first; providers that do
    not raise it yet are recognised by the HTTP status they carry.
    """
    if isinstance(exc, TimeoutError | ModelTimeoutError):
        return "timeout"
    if isinstance(exc, ModelRateLimitError) or _status(exc) == 429:
        return "rate_limited"
    if isinstance(exc, ModelError | ConnectionError) or _status(exc) is not None:
        return "unavailable"
    name = type(exc).__name__
    if "Timeout" in name:
        return "timeout"
    if any(cls.__name__ == "TransportError" for cls in type(exc).__mro__):
        return "unavailable"  # httpx's: a connection dropped mid-answer, a read that failed
    return "unavailable" if "Connect" in name or "APIError" in name else None


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) and status >= 400 else None


def retry_after_s(exc: BaseException, *, now: float | None = None) -> float | None:
    """The wait a rate-limit answer asks for: ``retry-after-ms``, else ``Retry-After``
    in seconds or as an HTTP date; ``None`` when it asks for none."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)  # raises on garbage
        return max(0.0, when.timestamp() - (time.time() if now is None else now))


class BudgetedModel(Runnable[LanguageModelInput, BaseMessage]):
    """One model of a chain: its calls run under its latency budget; a failure raises
    ``ModelCallFailed``, which the chain's ``with_fallbacks`` hands to the next model."""

    def __init__(
        self,
        model: Runnable[LanguageModelInput, BaseMessage],
        *,
        spec: ModelSpec,
        role: Role,
        next_model: str | None,
        counters: CallCounters,
        observer: ModelCallObserver | None = None,
    ) -> None:
        self.model = model
        self.spec = spec
        self.role = role
        self.next_model = next_model
        self.counters = counters
        self.observer = observer
        self.name = spec.model

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """``ainvoke`` in a fresh event loop: the budget needs one (the mesh is async)."""
        return asyncio.run(self.ainvoke(input, config, **kwargs))

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """The model's answer, tagged with the model's name in ``response_metadata``."""
        self.counters.add(self.spec.model, "calls")
        call, scope = self._start(input, streaming=False)
        try:
            with scope:
                message = await self._answer(input, config, **kwargs)
        except BaseException as exc:
            self._end(call, exc)
            raise
        _took(call, message)
        self._end(call)
        self.counters.add(self.spec.model, "answered")
        return _tag(message, self.spec.model)

    async def _answer(
        self, input: LanguageModelInput, config: RunnableConfig | None, **kwargs: Any
    ) -> BaseMessage:
        deadline = asyncio.get_running_loop().time() + self.spec.latency_budget_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    return await self.model.ainvoke(input, config, **kwargs)
            except Exception as exc:
                await self._wait_or_raise(exc, deadline)

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessage]:
        """The model's answer in chunks. The budget bounds the wait for the first chunk
        and each wait between chunks; a failure or a stall at any point raises
        ``ModelCallFailed`` (``AnsweredInPart`` once chunks were yielded)."""
        self.counters.add(self.spec.model, "calls")
        template = ((config or {}).get("metadata") or {}).get(TEMPLATE_KEY)
        call, scope = self._start(input, streaming=True, template=template)
        try:
            with scope:
                stream, first = await self._first_chunk(input, config, **kwargs)
        except BaseException as exc:
            self._end(call, exc)
            raise
        self.counters.add(self.spec.model, "answered")
        _took(call, first)
        failed: BaseException | None = None
        try:
            yield _tag(first, self.spec.model)
            while True:
                try:
                    async with asyncio.timeout(self.spec.latency_budget_s):
                        chunk = await anext(stream, None)
                except Exception as exc:
                    raise self._broke_off(exc) from exc
                if chunk is None:
                    return
                _took(call, chunk)
                yield chunk
        except BaseException as exc:
            failed = exc if not isinstance(exc, GeneratorExit) else None
            raise
        finally:
            self._end(call, failed)
            await _aclose(stream)

    def _broke_off(self, exc: Exception) -> Exception:
        """What a stream that failed after its first chunk raises: ``AnsweredInPart``
        for a model failure (a dropped connection, a stall), ``exc`` itself otherwise."""
        reason = failure_reason(exc)
        if reason is None:
            return exc
        failed = self._failed(reason, exc, midway=True)
        return AnsweredInPart(model=failed.model, reason=failed.reason, detail=str(failed))

    async def _first_chunk(
        self, input: LanguageModelInput, config: RunnableConfig | None, **kwargs: Any
    ) -> tuple[AsyncIterator[BaseMessage], BaseMessage]:
        deadline = asyncio.get_running_loop().time() + self.spec.latency_budget_s
        while True:
            stream = aiter(self.model.astream(input, config, **kwargs))
            try:
                async with asyncio.timeout_at(deadline):
                    return stream, await anext(stream)
            except Exception as exc:
                await _aclose(stream)
                await self._wait_or_raise(exc, deadline)

    def _start(
        self,
        input: LanguageModelInput,
        *,
        streaming: bool,
        template: PromptTemplate | None = None,
    ) -> tuple[ModelCall, AbstractContextManager[object]]:
        """The record of a call about to be sent, and the observer's scope for it."""
        call = ModelCall(
            role=self.role,
            model=self.spec.model,
            provider=self.spec.provider,
            messages=input,
            streaming=streaming,
            template=template or current_template(),
            temperature=self.spec.temperature,
            max_tokens=self.spec.max_tokens,
        )
        call.duration_s = time.perf_counter()
        scope = self.observer.started(call) if self.observer is not None else nullcontext()
        return call, scope

    def _end(self, call: ModelCall, error: BaseException | None = None) -> None:
        if call.handle is _ENDED:
            return
        call.duration_s = time.perf_counter() - call.duration_s
        if error is not None:
            call.error_type = _error_type(error)
        if self.observer is not None:
            self.observer.ended(call)
        call.handle = _ENDED
        record(call)

    async def _wait_or_raise(self, exc: Exception, deadline: float) -> None:
        """Sleep out a 429 whose ``Retry-After`` fits in the budget; otherwise raise
        ``ModelCallFailed`` (or ``exc`` itself when it is no model failure)."""
        reason = failure_reason(exc)
        if reason is None:
            raise exc
        if reason == "rate_limited":
            wait = retry_after_s(exc)
            left = deadline - asyncio.get_running_loop().time()
            if wait is not None and wait < left:
                self.counters.add(self.spec.model, "retry_waits")
                logger.info(
                    "models: %s answered 429 for %s; waiting %.2f s (Retry-After, %.2f s "
                    "of budget left) before asking it again",
                    self.spec.model,
                    self.role,
                    wait,
                    left,
                )
                await asyncio.sleep(wait)
                return
        raise self._failed(reason, exc) from exc

    def _failed(
        self, reason: FailureReason, exc: Exception, *, midway: bool = False
    ) -> ModelCallFailed:
        counter = {"timeout": "timeouts", "rate_limited": "rate_limited"}.get(reason, "failed")
        self.counters.add(self.spec.model, counter)
        detail = (
            f"no answer within its {self.spec.latency_budget_s:g} s budget"
            if isinstance(exc, TimeoutError)
            else f"{type(exc).__name__}: {exc}"
        )
        if midway:
            detail = f"broke off mid-answer: {detail}"
        if self.next_model is not None:
            self.counters.add(self.spec.model, "fell_back")
            logger.warning(
                "models: %s failed for %s (%s: %s); falling back to %s",
                self.spec.model,
                self.role,
                reason,
                detail,
                self.next_model,
            )
        else:
            logger.error(
                "models: %s failed for %s (%s: %s); no fallback left",
                self.spec.model,
                self.role,
                reason,
                detail,
            )
        return ModelCallFailed(model=self.spec.model, reason=reason, detail=detail)


async def _aclose(stream: AsyncIterator[Any]) -> None:
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()


_ENDED = object()
"""``ModelCall.handle`` once the call was reported (a stream reports once)."""


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, ModelCallFailed):
        return exc.reason
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return failure_reason(exc) or type(exc).__name__


def _took(call: ModelCall, message: BaseMessage) -> None:
    """Add what ``message`` (an answer, or one chunk of it) tells to ``call``."""
    metadata = message.response_metadata
    call.response_model = call.response_model or metadata.get("model_name")
    call.response_id = call.response_id or getattr(message, "id", None)
    if reason := metadata.get("finish_reason"):
        call.finish_reasons = (*call.finish_reasons, str(reason))
    usage = getattr(message, "usage_metadata", None)
    if usage:
        call.input_tokens = (call.input_tokens or 0) + int(usage.get("input_tokens", 0))
        call.output_tokens = (call.output_tokens or 0) + int(usage.get("output_tokens", 0))
    piece = _output_text(message)
    if piece:
        call.output = (call.output or "") + piece


def _output_text(message: BaseMessage) -> str:
    """The answer as text: its text, followed by its tool calls as JSON when it made any."""
    calls = getattr(message, "tool_calls", None) or []
    chunks = getattr(message, "tool_call_chunks", None) or []
    text = message.text
    if calls:
        return text + json.dumps([{"name": c["name"], "arguments": c["args"]} for c in calls])
    if chunks:
        return text + "".join(str(c.get("args") or "") for c in chunks)
    return text


def _tag(message: BaseMessage, model: str) -> BaseMessage:
    # Only the first chunk of a stream is tagged: merging chunks concatenates strings.
    message.response_metadata[ANSWERED_BY] = model
    return message


ModelFactory = Callable[[ModelSpec], BaseChatModel]
"""Builds the chat model of a spec; ``build_chat_model`` unless a router is given one."""


def build_chat_model(spec: ModelSpec, **runtime: Any) -> BaseChatModel:
    """The chat model a spec names: the offline model for ``pactmesh-offline:*``,
    otherwise LangChain's ``init_chat_model`` with the spec's settings. ``runtime``
    adds constructor arguments that configuration cannot hold (an HTTP client)."""
    if spec.offline:
        from pactmesh_reasoning.offline import OfflineChatModel

        return OfflineChatModel(model_name=spec.model)
    from langchain.chat_models import init_chat_model

    kwargs: dict[str, Any] = {"temperature": spec.temperature, "max_retries": spec.max_retries}
    if spec.provider == "openai":
        kwargs["stream_usage"] = True  # the usage chunk at the end of a stream: tokens count
    if spec.max_tokens is not None:
        kwargs["max_tokens"] = spec.max_tokens
    if spec.base_url is not None:
        kwargs["base_url"] = spec.base_url
    key = _api_key(spec)
    if key is not None:
        kwargs["api_key"] = key
    model: BaseChatModel = init_chat_model(spec.model, **{**kwargs, **spec.params, **runtime})
    return model


def _api_key(spec: ModelSpec) -> str | None:
    if spec.api_key is not None:
        return spec.api_key.get_secret_value()
    if spec.api_key_env is None:
        return None
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise ModelConfigError(f"{spec.model}: api_key_env names {spec.api_key_env}, unset")
    return key


class ModelRouter:
    """The chains of every role, built from a ``ModelsConfig``.

    Chat models are built once per spec and shared by every chain that uses them.
    """

    def __init__(
        self,
        config: ModelsConfig | None = None,
        *,
        factory: ModelFactory | None = None,
        counters: CallCounters | None = None,
        observer: ModelCallObserver | None = None,
    ) -> None:
        """``observer`` sees every call to every model (``pactmesh_reasoning.calls``)."""
        self.config = config if config is not None else load_models_config()
        self.counters = counters if counters is not None else _COUNTERS
        self.observer = observer
        self._factory = factory or build_chat_model
        self._models: dict[str, BaseChatModel] = {}
        self._chains: dict[Hashable, Runnable[LanguageModelInput, BaseMessage]] = {}

    def build_all(self, roles: Sequence[Role] = ROLES) -> None:
        """Build every model of ``roles``' chains now, at start-up. A provider's package
        is imported when its first model is built (langchain-openai with the OpenAI SDK:
        0.7 s on a 2-core machine), which on the first call would hold the event loop,
        and every run in flight with it. A spec that cannot be built is logged and left to fail at
        its call, as it would have."""
        for role in roles:
            for spec in self.config.role(role).chain:
                try:
                    self.model(spec)
                except Exception as exc:  # raised again at the call, where it is handled
                    logger.warning(
                        "models: %s (%s) not built at start-up: %s", spec.model, role, exc
                    )

    def model(self, spec: ModelSpec) -> BaseChatModel:
        """The (shared) chat model of ``spec``."""
        key = spec.model_dump_json()
        if key not in self._models:
            self._models[key] = self._factory(spec)
        return self._models[key]

    def chat_for(
        self,
        role: Role,
        *,
        tools: Sequence[Any] | None = None,
        tool_choice: str | None = None,
    ) -> Runnable[LanguageModelInput, BaseMessage]:
        """``role``'s chain as one Runnable: each model under its budget, with tools bound
        when given, then ``with_fallbacks`` over the rest of the chain. Chains are kept
        and reused when the tools are hashable (classes, ``BaseTool`` objects)."""
        try:
            key = (role, tuple(tools or ()), tool_choice)
            hash(key)
        except TypeError:
            return self._chain(role, tools=tools, tool_choice=tool_choice)
        if key not in self._chains:
            self._chains[key] = self._chain(role, tools=tools, tool_choice=tool_choice)
        return self._chains[key]

    def _chain(
        self, role: Role, *, tools: Sequence[Any] | None, tool_choice: str | None
    ) -> Runnable[LanguageModelInput, BaseMessage]:
        first, *rest = self._links(role, tools=tools, tool_choice=tool_choice)
        if not rest:
            return first
        return first.with_fallbacks(rest, exceptions_to_handle=(ModelCallFailed,))

    def _links(
        self, role: Role, *, tools: Sequence[Any] | None = None, tool_choice: str | None = None
    ) -> list[BudgetedModel]:
        """Each model of ``role``'s chain under its budget, in the order they are tried."""
        specs = self.config.role(role).chain
        links: list[BudgetedModel] = []
        for index, spec in enumerate(specs):
            model: Runnable[LanguageModelInput, BaseMessage] = self.model(spec)
            if tools:
                model = self.model(spec).bind_tools(tools, tool_choice=tool_choice)
            following = specs[index + 1].model if index + 1 < len(specs) else None
            links.append(
                BudgetedModel(
                    model,
                    spec=spec,
                    role=role,
                    next_model=following,
                    counters=self.counters,
                    observer=self.observer,
                )
            )
        return links

    async def ainvoke(
        self,
        role: Role,
        messages: LanguageModelInput,
        *,
        tools: Sequence[Any] | None = None,
        tool_choice: str | None = None,
        template: PromptTemplate | None = None,
    ) -> AIMessage:
        """One answer from ``role``'s chain; ``answered_by`` names who gave it, and the
        calls are recorded as made from ``template``.

        Raises ``AllModelsFailed`` when every model of the chain failed.
        """
        chain = self.chat_for(role, tools=tools, tool_choice=tool_choice)
        try:
            with using_template(template or current_template()):
                message = await chain.ainvoke(messages)
        except ModelCallFailed as exc:
            models = [spec.model for spec in self.config.role(role).chain]
            raise AllModelsFailed(role=role, models=models) from exc
        if not isinstance(message, AIMessage):
            raise TypeError(f"{answered_by(message)} answered a {type(message).__name__}")
        return message

    async def astream(self, role: Role, messages: LanguageModelInput) -> AsyncIterator[str]:
        """``role``'s answer as text pieces, in order. When a model breaks off mid-answer
        the next one's answer follows from its start: use ``astream_answer`` to tell."""
        async for piece in self.astream_answer(role, messages):
            yield piece.text

    async def astream_answer(
        self, role: Role, messages: LanguageModelInput, *, template: PromptTemplate | None = None
    ) -> AsyncIterator[StreamPiece]:
        """``role``'s answer as pieces, each with the model writing it (known from the
        first chunk, which the chain tags), so a result can say who wrote it; the calls
        are recorded as made from ``template``.

        A model that fails before its first piece hands the call to the next, unseen; one
        that fails after (a dropped connection, a stall past its budget) too, and the new
        answer's first piece is marked ``restarted``. Raises ``AllModelsFailed`` when no
        model of the chain finished an answer.
        """
        # In the run's config, not a context variable: one set inside an async generator
        # would stay set in its caller's context between pieces.
        config: RunnableConfig = {"metadata": {TEMPLATE_KEY: template}} if template else {}
        broke_off = False
        for link in self._links(role):
            model: str | None = None
            try:
                async for chunk in link.astream(messages, config):
                    model = model or answered_by(chunk)
                    text = chunk.content if isinstance(chunk, AIMessageChunk) else None
                    if isinstance(text, str) and text:
                        yield StreamPiece(text, model, restarted=broke_off)
                        broke_off = False
                return
            except AnsweredInPart:
                broke_off = True
            except ModelCallFailed:
                continue
        models = [spec.model for spec in self.config.role(role).chain]
        raise AllModelsFailed(role=role, models=models)
