"""The simulator's state and decisions: configs, seeded draws, answers, stats, request log.

Each request draws its fate from the random generator of the config that applies to its
model, always with the same number of draws, so the same config, seed and traffic give
the same outcomes whichever way each request goes.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pactmesh_model_sim.config import MALFORMED_KINDS, LognormalLatency, Outcome, SimConfig
from pactmesh_model_sim.protocol import ChatCompletionRequest
from pactmesh_model_sim.scenarios import Scenario

logger = logging.getLogger(__name__)

UNKNOWN_TOOL = "lookup_internal_records"
"""The tool an ``unknown_tool`` answer calls (renamed if a request does offer it)."""
SYSTEM_FINGERPRINT = "pactmesh-model-sim"


class UnknownScenario(ValueError):
    """A config names a scenario that is not registered."""


@dataclass(frozen=True)
class Decision:
    """What to do with one request."""

    delay_s: float
    outcome: Outcome
    variant: float
    """A draw in [0, 1) that picks between the variants of a malformed answer."""


@dataclass
class Answer:
    """The assistant message of one answer, before it is shaped as JSON or as chunks."""

    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    outcome: Outcome = "ok"
    """What the answer actually is: a malformation that does not apply to it (an
    unknown tool when no tool was offered) leaves it ``ok``."""
    truncated: bool = False
    """The text was cut at the request's ``max_tokens`` (counted in words)."""

    @property
    def finish_reason(self) -> str:
        """``tool_calls``, ``length`` or ``stop``, as OpenAI reports it."""
        if self.tool_calls:
            return "tool_calls"
        return "length" if self.truncated else "stop"


class Simulator:
    """Configs (one for every model, plus overrides by model name), draws and records."""

    def __init__(
        self,
        *,
        config: SimConfig,
        scenarios: Mapping[str, Scenario],
        log_size: int = 1000,
        default_scenario: str = "offline",
    ) -> None:
        self._initial = config
        self._scenarios = dict(scenarios)
        self._default_scenario = default_scenario
        self._check(SimConfig(scenario=default_scenario))
        self._log_size = log_size
        self._check(config)
        self.reset()

    def _check(self, config: SimConfig) -> None:
        if config.scenario is not None and config.scenario not in self._scenarios:
            known = ", ".join(sorted(self._scenarios))
            raise UnknownScenario(f"no scenario {config.scenario!r}; known: {known}")

    def reset(self) -> None:
        """Back to the initial config, with no overrides, stats or logged requests."""
        self._default = self._initial
        self._overrides: dict[str, SimConfig] = {}
        self._rngs: dict[str | None, random.Random] = {None: random.Random(self._initial.seed)}
        self._counts: Counter[Outcome] = Counter()
        self._by_model: dict[str, Counter[Outcome]] = {}
        self._log: deque[dict[str, Any]] = deque(maxlen=self._log_size)
        self._sequence = 0
        self._calls = 0

    def set_config(self, config: SimConfig, *, model: str | None = None) -> None:
        """Replace the config of every model (``model=None``) or of one model name, and
        restart its random sequence."""
        self._check(config)
        if model is None:
            self._default = config
        else:
            self._overrides[model] = config
        self._rngs[model] = random.Random(f"{config.seed}:{model or ''}")

    def clear_config(self, model: str) -> None:
        """Drop a model's override; it follows the default config again."""
        self._overrides.pop(model, None)
        self._rngs.pop(model, None)

    def configs(self) -> dict[str, Any]:
        """The default config and the overrides, as JSON."""
        return {
            "default": self._default.model_dump(mode="json"),
            "models": {m: c.model_dump(mode="json") for m, c in self._overrides.items()},
        }

    def models(self) -> list[str]:
        """Model names with an override or seen in a request."""
        return sorted({*self._overrides, *self._by_model})

    def decide(self, model: str) -> Decision:
        """Draw one request's latency and outcome (four draws, whatever the outcome)."""
        key = model if model in self._overrides else None
        config, rng = self._overrides.get(model, self._default), self._rngs[key]
        delay_s = _latency_s(config, rng.random(), rng.random())
        draw, variant, pick = rng.random(), rng.random(), rng.random()
        if config.fail_next:
            outcome: Outcome = config.fail_next[0]
            remaining = config.model_copy(update={"fail_next": config.fail_next[1:]})
            self._store(remaining, key)
        elif draw < config.rate_429:
            outcome = "429"
        elif draw < config.rate_429 + config.rate_5xx:
            outcome = "5xx"
        elif draw < config.rate_429 + config.rate_5xx + _malformed_share(config):
            outcome = _weighted_kind(config, pick)
        else:
            outcome = "ok"
        return Decision(delay_s=delay_s, outcome=outcome, variant=variant)

    def config_for(self, model: str) -> SimConfig:
        """The config that applies to ``model``."""
        return self._overrides.get(model, self._default)

    def answer(self, request: ChatCompletionRequest, decision: Decision) -> Answer:
        """The assistant message for a request that is answered (not a 429 or 5xx)."""
        name = self.config_for(request.model).scenario or self._default_scenario
        scenario = self._scenarios[name]
        tool = request.chosen_tool()
        if tool is not None:
            arguments = scenario.arguments(request, tool)
            self._calls += 1
            call_id = f"call_sim_{self._calls}"
            return _tool_answer(request, tool.function.name, arguments, decision, call_id)
        schema = request.json_schema()
        if schema is not None:
            return _json_answer(scenario.json_object(request, schema), decision)
        return _limited(scenario.text(request), request.max_completion_tokens or request.max_tokens)

    def record(self, request: ChatCompletionRequest, outcome: Outcome) -> None:
        """Count a request's outcome and keep its body in the request log."""
        self._counts[outcome] += 1
        self._by_model.setdefault(request.model, Counter())[outcome] += 1
        self._log.append(
            {"model": request.model, "outcome": outcome, "body": request.model_dump(mode="json")}
        )
        logger.debug("model-sim: %s -> %s", request.model, outcome)

    def stats(self) -> dict[str, Any]:
        """Requests by outcome, overall and by model name."""
        return {
            "requests": sum(self._counts.values()),
            "by_outcome": dict(self._counts),
            "by_model": {m: dict(c) for m, c in self._by_model.items()},
        }

    def requests(self) -> list[dict[str, Any]]:
        """The logged requests, oldest first."""
        return list(self._log)

    def completion_id(self) -> str:
        """A fresh ``chatcmpl-...`` id."""
        self._sequence += 1
        return f"chatcmpl-sim-{self._sequence}"

    def _store(self, config: SimConfig, key: str | None) -> None:
        if key is None:
            self._default = config
        else:
            self._overrides[key] = config


def _latency_s(config: SimConfig, u1: float, u2: float) -> float:
    latency = config.latency
    if not isinstance(latency, LognormalLatency):
        return latency.ms / 1000
    # Box-Muller from the two uniform draws, so the draw count never varies.
    normal = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)
    ms = latency.median_ms * math.exp(latency.sigma * normal)
    return min(ms, latency.max_ms or ms) / 1000


def _malformed_share(config: SimConfig) -> float:
    # The malformed rate applies to what is left after 429s and 5xx.
    return (1.0 - config.rate_429 - config.rate_5xx) * config.malformed_rate


def _weighted_kind(config: SimConfig, pick: float) -> Outcome:
    kinds = [(k, config.malformed_kinds.get(k, 0.0)) for k in MALFORMED_KINDS]
    total = sum(w for _, w in kinds if w > 0)
    threshold = pick * total
    for kind, weight in kinds:
        if weight <= 0:
            continue
        if threshold < weight:
            return kind
        threshold -= weight
    return next(k for k, w in reversed(kinds) if w > 0)


def _limited(text: str, max_tokens: int | None) -> Answer:
    words = text.split(" ")
    if max_tokens is None or len(words) <= max_tokens:
        return Answer(content=text)
    return Answer(content=" ".join(words[:max_tokens]), truncated=True)


def _tool_answer(
    request: ChatCompletionRequest,
    name: str,
    arguments: dict[str, Any],
    decision: Decision,
    call_id: str,
) -> Answer:
    outcome = decision.outcome
    text: str | None = None
    if outcome == "unknown_tool":
        offered = {t.function.name for t in request.tools or ()}
        name = UNKNOWN_TOOL if UNKNOWN_TOOL not in offered else f"{UNKNOWN_TOOL}_v2"
    elif outcome == "invalid_json":
        text = _truncated(arguments)
    elif outcome in ("hallucinated_field", "out_of_range"):
        arguments, outcome = _break(arguments, outcome, decision.variant)
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": text or json.dumps(arguments)},
    }
    return Answer(content=None, tool_calls=[call], outcome=outcome)


def _json_answer(value: Any, decision: Decision) -> Answer:
    outcome = decision.outcome
    if outcome == "invalid_json":
        return Answer(content=_truncated(value), outcome=outcome)
    if outcome in ("hallucinated_field", "out_of_range") and isinstance(value, dict):
        value, outcome = _break(value, outcome, decision.variant)
    else:
        outcome = "ok"
    return Answer(content=json.dumps(value), outcome=outcome)


def _truncated(value: Any) -> str:
    text = json.dumps(value)
    return text[: max(1, len(text) // 2)]


def _break(arguments: dict[str, Any], outcome: Outcome, variant: float) -> tuple[Any, Outcome]:
    """A rule-breaking copy of ``arguments``: a renamed or added field, or an amount out of
    range; the outcome becomes ``ok`` when there is nothing to break."""
    broken = dict(arguments)
    if outcome == "hallucinated_field":
        if broken and variant < 0.5:
            first = next(iter(broken))
            broken[f"{first}_value"] = broken.pop(first)
        else:
            broken["internal_notes"] = "added by the model"
        return broken, outcome
    amount = _amount_key(broken)
    if amount is None:
        return arguments, "ok"
    broken[amount] = broken[amount] * 100 if variant < 0.5 else -abs(broken[amount]) - 1
    return broken, outcome


def _amount_key(arguments: dict[str, Any]) -> str | None:
    numeric = [
        k for k, v in arguments.items() if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    preferred = [k for k in numeric if "amount" in k.lower()]
    return next(iter(preferred or numeric), None)


def words(text: str) -> Iterator[str]:
    """``text`` as stream pieces: each word with the space before it, as tokens come."""
    for index, word in enumerate(text.split(" ")):
        yield word if index == 0 else f" {word}"


def now() -> int:
    """Seconds since the epoch, for ``created``."""
    return int(time.time())
