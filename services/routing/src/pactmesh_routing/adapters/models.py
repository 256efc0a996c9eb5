"""The models routing asks: the configured chain, with routing's own offline model.

``PACTMESH_MODELS_JSON`` (or ``PACTMESH_MODELS_FILE``) names the routing role's chain,
as for every service. Wherever that chain uses the offline model (``pactmesh-offline:*``,
which is every model when nothing is configured), routing substitutes
``RoutingOfflineModel``: the kit's offline model, answering ``RoutingDecision`` with
routing's evidence (nearest few-shot examples blended with the keyword rules) and fields
from the deterministic extractor. It answers through the same tool call, strict parsing
and business rules as a provider's model would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pactmesh_reasoning.calls import ModelCallObserver
from pactmesh_reasoning.classifier import Classification, ExampleClassifier
from pactmesh_reasoning.models import (
    ModelFactory,
    ModelRouter,
    ModelsConfig,
    ModelSpec,
    build_chat_model,
)
from pactmesh_reasoning.offline import OfflineChatModel
from pactmesh_workflows.registry import registry

from pactmesh_routing.data import by_workflow, examples, load
from pactmesh_routing.domain.classifier import (
    extract_fields,
    keyword_scores,
    without_identifiers,
)
from pactmesh_routing.domain.errors import InvalidExamples
from pactmesh_routing.domain.evidence import blend
from pactmesh_routing.domain.schema import RoutingDecision, RoutingDecisionBase, RoutingFields

TOOL = RoutingDecision.__name__


class RoutingOfflineModel(OfflineChatModel):
    """The offline model, answering routing's ``RoutingDecision`` calls with routing's
    evidence; any other call gets the kit's offline answer. Not an LLM: deterministic."""

    nearest: ExampleClassifier
    """Few-shot examples of every workflow, compared with the request by embeddings."""

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = super()._generate(messages, stop, run_manager, **kwargs)
        if not _calls_routing(result):
            return result
        text = _request(messages)
        nearest = self.nearest.classify(without_identifiers(text))
        return _answered(result, self._decide(text, nearest))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = await super()._agenerate(messages, stop, run_manager, **kwargs)
        if not _calls_routing(result):
            return result
        text = _request(messages)
        nearest = await self.nearest.aclassify(without_identifiers(text))
        return _answered(result, self._decide(text, nearest))

    def _decide(self, text: str, nearest: Classification) -> RoutingDecisionBase:
        evidence = blend(
            text=text,
            nearest=nearest,
            temperature=self.nearest.temperature,
            keywords=keyword_scores(text),
        )
        fields = extract_fields(text, workflow=evidence.workflow)
        return RoutingDecision.model_validate(
            {
                "workflow": evidence.workflow,
                "confidence": evidence.confidence,
                "reason": evidence.reason,
                "fields": RoutingFields.model_validate(fields),
            }
        )


def _calls_routing(result: ChatResult) -> bool:
    message = result.generations[0].message
    return isinstance(message, AIMessage) and [c["name"] for c in message.tool_calls] == [TOOL]


def _request(messages: Sequence[BaseMessage]) -> str:
    """The request: the first human message (any later one asks for a repair)."""
    first = next(m for m in messages if isinstance(m, HumanMessage))
    return first.text


def _answered(result: ChatResult, decision: RoutingDecisionBase) -> ChatResult:
    message = result.generations[0].message
    assert isinstance(message, AIMessage)  # checked by _calls_routing
    call = message.tool_calls[0]
    answer = AIMessage(
        content="",
        tool_calls=[{**call, "args": decision.model_dump(mode="json", exclude_none=True)}],
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
    )
    return ChatResult(generations=[ChatGeneration(message=answer)])


def load_classifier(path: Path | None = None) -> ExampleClassifier:
    """The nearest-example classifier over the registered workflows' few-shot examples
    (or those in the JSON-lines file at ``path``), compared without their identifiers
    (as requests are: see ``without_identifiers``)."""
    grouped = by_workflow(load(path) if path is not None else examples())
    names = registry().names
    unknown = sorted(set(grouped) - set(names))
    missing = sorted(set(names) - set(grouped))
    if unknown or missing:
        raise InvalidExamples(
            f"{path or 'the registry'}: examples must label every registered workflow and "
            f"no other; unknown {unknown}, missing {missing}"
        )
    return ExampleClassifier(
        {
            workflow: [without_identifiers(text) for text in texts]
            for workflow, texts in grouped.items()
        }
    )


def chat_models(nearest: ExampleClassifier, **runtime: Any) -> ModelFactory:
    """Builds each configured model; the offline one is ``RoutingOfflineModel``.
    ``runtime`` goes to every provider's model (``build_chat_model``: an HTTP client)."""

    def build(spec: ModelSpec) -> BaseChatModel:
        if spec.offline:
            return RoutingOfflineModel(model_name=spec.model, nearest=nearest)
        return build_chat_model(spec, **runtime)

    return build


def routing_models(
    *,
    nearest: ExampleClassifier,
    config: ModelsConfig | None = None,
    observer: ModelCallObserver | None = None,
) -> ModelRouter:
    """The model chains (``config``, else the environment's), with routing's offline model;
    ``observer`` sees every call (the GenAI spans and metrics)."""
    return ModelRouter(config, factory=chat_models(nearest), observer=observer)
