"""The ``offline`` scenario, the default: the simulator answers as pactmesh's offline model.

A simulator that answers like a good model lets ``PACTMESH_MODEL_SIM=1 make run`` and
the benchmarks take the real client path (langchain-openai, HTTP, parsing, validation)
and still route and draft as the mesh does with no provider: a password question goes
to support triage, a refund to the refund workflow with its order id and amount. The
answers come from the same code as offline: routing's ``RoutingOfflineModel`` (nearest
few-shot examples blended with the keyword rules, fields from routing's extractor) for
a ``RoutingDecision`` call, the kit's offline heuristics for any other call or text.
Faults (latency, 429, 5xx, malformed answers, broken streams) stay opt-in in the config.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

from pactmesh_model_sim.protocol import ChatCompletionRequest, ToolDef

if TYPE_CHECKING:  # LangChain is imported with the model, not with the simulator
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

_building = threading.Lock()


@functools.cache
def _built() -> BaseChatModel:
    # Imported and built on first use: the classifier loads MiniLM, which a simulator
    # serving only the ``fill`` scenario (or only faults) never needs.
    from pactmesh_routing.adapters.models import RoutingOfflineModel, load_classifier

    return RoutingOfflineModel(model_name="pactmesh-offline:default", nearest=load_classifier())


def _offline_model() -> BaseChatModel:
    with _building:  # one build, whether the warm-up or a first request comes first
        return _built()


class OfflineScenario:
    """Answers each request with the offline model, given the same conversation and tools."""

    def warm(self) -> None:
        """Start loading the model in the background (MiniLM: seconds on a busy
        machine), so that it is not loaded inside a first request whose client allows
        a short latency budget, nor delays the server's start."""
        threading.Thread(target=_offline_model, name="offline-model-warm", daemon=True).start()

    def text(self, request: ChatCompletionRequest) -> str:
        return _offline_model().invoke(_messages(request)).text

    def arguments(self, request: ChatCompletionRequest, tool: ToolDef) -> dict[str, Any]:
        return _call(request, tool.model_dump(mode="json", exclude_none=True))

    def json_object(self, request: ChatCompletionRequest, schema: dict[str, Any]) -> Any:
        if not schema:
            return {"answer": self.text(request)}
        name = (request.response_format or {}).get("json_schema", {}).get("name", "answer")
        return _call(
            request, {"type": "function", "function": {"name": name, "parameters": schema}}
        )


def _call(request: ChatCompletionRequest, tool: dict[str, Any]) -> dict[str, Any]:
    from langchain_core.messages import AIMessage

    name = tool["function"]["name"]
    bound = _offline_model().bind_tools([tool], tool_choice=name)
    answer = bound.invoke(_messages(request))
    assert isinstance(answer, AIMessage)
    assert answer.tool_calls, "the offline model calls the tool it is told to"
    return dict(answer.tool_calls[0]["args"])


def _messages(request: ChatCompletionRequest) -> list[BaseMessage]:
    from langchain_core.messages import convert_to_messages

    return convert_to_messages(request.messages)
