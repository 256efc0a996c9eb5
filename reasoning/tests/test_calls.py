"""What the router records of each model call: the log a service turns into audit events
and usage, and what an observer (the kit's GenAI telemetry) is shown."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import httpx
import pytest
from langchain_core.messages import HumanMessage
from pactmesh_model_sim.testing import SimAdmin
from pactmesh_reasoning.calls import ModelCall, PromptTemplate, model_calls
from pactmesh_reasoning.models import (
    OFFLINE_MODEL,
    AllModelsFailed,
    CallCounters,
    ModelRouter,
    ModelsConfig,
    ModelSpec,
    RoleConfig,
    build_chat_model,
)
from pactmesh_reasoning.structured import structured_call
from pydantic import BaseModel, ConfigDict

TEMPLATE = PromptTemplate("test.extract", "1", "Extract the order.")


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str
    amount: float


class Recorder:
    """An observer that keeps what it saw."""

    def __init__(self) -> None:
        self.seen_start: list[ModelCall] = []
        self.seen_end: list[ModelCall] = []

    def started(self, call: ModelCall) -> AbstractContextManager[object]:
        self.seen_start.append(call)
        return nullcontext()

    def ended(self, call: ModelCall) -> None:
        self.seen_end.append(call)


def _router(*specs: ModelSpec, http: httpx.AsyncClient | None = None) -> ModelRouter:
    role = RoleConfig(primary=specs[0], fallbacks=list(specs[1:]))
    return ModelRouter(
        ModelsConfig(routing=role, extraction=role, drafting=role),
        factory=lambda spec: (
            build_chat_model(spec, http_async_client=http)
            if not spec.offline
            else build_chat_model(spec)
        ),
        counters=CallCounters(),
    )


async def test_the_offline_model_reports_tokens_and_each_call_is_logged() -> None:
    router = _router(ModelSpec(model=OFFLINE_MODEL))
    router.observer = observer = Recorder()
    with model_calls() as log:
        result = await structured_call(
            "extraction",
            schema=Order,
            prompt="Order ORD-4411 for $120.50",
            router=router,
            template=TEMPLATE,
        )
    assert result.status == "valid"
    (call,) = log.calls
    assert observer.seen_start == observer.seen_end == [call]
    assert (call.role, call.model, call.provider) == (
        "extraction",
        OFFLINE_MODEL,
        "pactmesh-offline",
    )
    assert call.template == TEMPLATE
    assert call.input_tokens
    assert call.output_tokens
    assert call.finish_reasons == ("tool_calls",)
    assert call.validation == "valid"
    assert call.attempt == 1
    assert call.output is not None
    assert "ORD-4411" in call.output
    assert call.duration_s >= 0
    assert log.input_tokens == call.input_tokens


async def test_a_repair_is_a_second_call_marked_invalid_then_valid(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    spec = ModelSpec(model="openai:sim-extract", base_url=sim.openai_base_url, api_key="sk-sim-1")
    sim.configure(fail_next=["hallucinated_field"])
    with model_calls() as log:
        result = await structured_call(
            "extraction",
            schema=Order,
            prompt="Order ORD-4411 for 120.50",
            router=_router(spec, http=http),
        )
    assert result.status == "repaired"
    first, second = log.calls
    assert (first.validation, first.attempt) == ("invalid", 1)
    assert first.errors
    assert any("not a field of the schema" in e for e in first.errors)
    assert (second.validation, second.attempt) == ("valid", 2)
    assert second.response_model
    assert second.input_tokens
    assert second.output_tokens


async def test_a_failed_model_is_logged_with_its_error_and_the_fallback_answers(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    primary = ModelSpec(
        model="openai:sim-extract", base_url=sim.openai_base_url, api_key="sk-sim-1"
    )
    sim.configure(fail_next=["5xx"])
    router = _router(primary, ModelSpec(model=OFFLINE_MODEL), http=http)
    with model_calls() as log:
        await router.ainvoke("drafting", [HumanMessage("hello")])
    failed, answered = log.calls
    assert (failed.model, failed.error_type) == ("openai:sim-extract", "unavailable")
    assert (answered.model, answered.error_type) == (OFFLINE_MODEL, None)


async def test_a_stream_is_one_call_with_the_usage_of_its_last_chunk() -> None:
    router = _router(ModelSpec(model=OFFLINE_MODEL))
    with model_calls() as log:
        pieces = [
            p.text async for p in router.astream_answer("drafting", "Hi there.", template=TEMPLATE)
        ]
    (call,) = log.calls
    assert call.streaming
    assert call.template == TEMPLATE
    assert call.output == "".join(pieces)
    assert call.output_tokens == len(call.output.split())
    assert call.finish_reasons == ("stop",)


async def test_no_log_open_records_nothing_and_nesting_records_in_both() -> None:
    router = _router(ModelSpec(model=OFFLINE_MODEL))
    await router.ainvoke("drafting", "nobody listens")
    with model_calls() as outer:
        with model_calls() as inner:
            await router.ainvoke("drafting", "both hear it")
        await router.ainvoke("drafting", "only the outer")
    assert len(inner.calls) == 1
    assert len(outer.calls) == 2


async def test_every_model_failing_still_logs_each_attempt() -> None:
    router = _router(
        ModelSpec(
            model="openai:nowhere",
            base_url="http://127.0.0.1:9",
            api_key="sk-x",
            latency_budget_s=2,
        )
    )
    with model_calls() as log, pytest.raises(AllModelsFailed):
        await router.ainvoke("drafting", "hello")
    (call,) = log.calls
    assert call.error_type == "unavailable"
