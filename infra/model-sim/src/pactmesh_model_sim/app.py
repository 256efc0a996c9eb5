"""The simulator's app factory: OpenAI's chat completions plus the ``/sim`` admin API."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse, StreamingResponse

from pactmesh_model_sim.config import SimConfig
from pactmesh_model_sim.offline import OfflineScenario
from pactmesh_model_sim.protocol import (
    ChatCompletionRequest,
    UnknownToolChoice,
    content_text,
    error_body,
)
from pactmesh_model_sim.scenarios import SCENARIOS, Scenario
from pactmesh_model_sim.settings import Settings
from pactmesh_model_sim.simulator import (
    SYSTEM_FINGERPRINT,
    Answer,
    Simulator,
    UnknownScenario,
    now,
    words,
)

logger = logging.getLogger(__name__)


def _simulator(request: Request) -> Simulator:
    simulator: Simulator = request.app.state.simulator
    return simulator


SimulatorDep = Annotated[Simulator, Depends(_simulator)]

openai_router = APIRouter(prefix="/v1", tags=["openai"])
admin_router = APIRouter(prefix="/sim", tags=["simulator"])


@openai_router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, sim: SimulatorDep
) -> JSONResponse | StreamingResponse:
    """Answer like OpenAI, or fail as the config says."""
    decision = sim.decide(body.model)
    if decision.outcome in ("429", "5xx"):
        sim.record(body, decision.outcome)
        return _failure(decision.outcome, sim.config_for(body.model).retry_after_s)
    try:
        answer = sim.answer(body, decision)
    except UnknownToolChoice as exc:
        return JSONResponse(
            error_body(str(exc), kind="invalid_request_error"), status.HTTP_400_BAD_REQUEST
        )
    if body.stream:
        config = sim.config_for(body.model)
        fault = decision.outcome if decision.outcome in STREAM_FAULTS else None
        sim.record(body, fault or answer.outcome)
        shape = Shape(
            decision.delay_s, config.stream_chunk_ms / 1000, fault, config.stream_fault_after_tokens
        )
        stream = _chunks(body, answer, sim.completion_id(), shape)
        return StreamingResponse(stream, media_type="text/event-stream")
    sim.record(body, "ok" if decision.outcome in STREAM_FAULTS else answer.outcome)
    await asyncio.sleep(decision.delay_s)
    return JSONResponse(_completion(body, answer, sim.completion_id()))


@openai_router.get("/models")
async def list_models(sim: SimulatorDep) -> dict[str, Any]:
    """The model names the simulator knows of; it answers to any name."""
    data = [
        {"id": m, "object": "model", "created": 0, "owned_by": SYSTEM_FINGERPRINT}
        for m in sim.models()
    ]
    return {"object": "list", "data": data}


@admin_router.get("/config")
async def get_config(sim: SimulatorDep) -> dict[str, Any]:
    """The config for every model, and the overrides by model name."""
    return sim.configs()


@admin_router.put("/config", status_code=status.HTTP_204_NO_CONTENT)
async def put_config(config: SimConfig, sim: SimulatorDep) -> None:
    """Replace the config for every model without an override."""
    _set(sim, config, model=None)


@admin_router.put("/config/models/{model}", status_code=status.HTTP_204_NO_CONTENT)
async def put_model_config(model: str, config: SimConfig, sim: SimulatorDep) -> None:
    """Give one model name a config of its own."""
    _set(sim, config, model=model)


@admin_router.delete("/config/models/{model}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_model_config(model: str, sim: SimulatorDep) -> None:
    """Drop a model name's own config."""
    sim.clear_config(model)


@admin_router.get("/stats")
async def get_stats(sim: SimulatorDep) -> dict[str, Any]:
    """Requests by outcome, overall and by model name."""
    return sim.stats()


@admin_router.get("/requests")
async def get_requests(sim: SimulatorDep) -> list[dict[str, Any]]:
    """The request bodies received (the latest ones, oldest first), with their outcome."""
    return sim.requests()


@admin_router.post("/reset", status_code=status.HTTP_204_NO_CONTENT)
async def reset(sim: SimulatorDep) -> None:
    """Back to the start-up config; stats and the request log emptied."""
    sim.reset()


def _set(sim: Simulator, config: SimConfig, *, model: str | None) -> None:
    try:
        sim.set_config(config, model=model)
    except UnknownScenario as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


def _failure(outcome: str, retry_after_s: float) -> JSONResponse:
    if outcome == "429":
        headers = {
            "retry-after": str(math.ceil(retry_after_s)),
            "retry-after-ms": str(round(retry_after_s * 1000)),
        }
        body = error_body(
            "Rate limit reached (simulated).", kind="requests", code="rate_limit_exceeded"
        )
        return JSONResponse(body, status.HTTP_429_TOO_MANY_REQUESTS, headers=headers)
    body = error_body("The server is overloaded (simulated).", kind="server_error")
    return JSONResponse(body, status.HTTP_503_SERVICE_UNAVAILABLE)


def _usage(request: ChatCompletionRequest, answer: Answer) -> dict[str, int]:
    prompt = sum(len(content_text(m.get("content")).split()) for m in request.messages)
    produced = " ".join(
        [answer.content or ""] + [c["function"]["arguments"] for c in answer.tool_calls]
    )
    completion = len(produced.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(request: ChatCompletionRequest, answer: Answer, cid: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = answer.tool_calls
    return {
        "id": cid,
        "object": "chat.completion",
        "created": now(),
        "model": request.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": answer.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage(request, answer),
    }


STREAM_FAULTS = ("stream_dies", "stream_stalls")
STALL_S = 3600.0
"""How long a stalled stream stays silent: until the client gives up and disconnects."""


class StreamDied(Exception):
    """Raised inside a streamed answer on purpose: the server drops the connection."""


@dataclass(frozen=True)
class Shape:
    """How a streamed answer is paced, and where it breaks."""

    delay_s: float
    """Before the first chunk."""
    chunk_s: float
    """Between chunks."""
    fault: str | None = None
    """``stream_dies`` or ``stream_stalls``, or ``None`` for an answer sent whole."""
    fault_after: int = 3
    """Pieces sent before the fault."""


async def _chunks(
    request: ChatCompletionRequest, answer: Answer, cid: str, shape: Shape
) -> AsyncIterator[str]:
    """The answer as OpenAI's server-sent events: a role delta, content (word by word) or
    tool-call deltas, a finishing delta, usage if asked for, then ``[DONE]``; broken after
    ``shape.fault_after`` pieces when ``shape.fault`` says so."""
    head = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": now(),
        "model": request.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }

    def event(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"

    await asyncio.sleep(shape.delay_s)
    yield event({"role": "assistant", "content": "" if answer.content is not None else None})
    for sent, delta in enumerate(_deltas(answer)):
        if sent == shape.fault_after and shape.fault == "stream_dies":
            raise StreamDied(f"stream dropped after {sent} pieces (simulated)")
        if sent == shape.fault_after and shape.fault == "stream_stalls":
            await asyncio.sleep(STALL_S)
        if shape.chunk_s:
            await asyncio.sleep(shape.chunk_s)
        yield event(delta)
    yield event({}, answer.finish_reason)
    if (request.stream_options or {}).get("include_usage"):
        usage = {**head, "choices": [], "usage": _usage(request, answer)}
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"


def _deltas(answer: Answer) -> list[dict[str, Any]]:
    if answer.content is not None:
        return [{"content": piece} for piece in words(answer.content)]
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(answer.tool_calls):
        function = call["function"]
        deltas.append(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": function["name"], "arguments": ""},
                    }
                ]
            }
        )
        text: str = function["arguments"]
        step = max(1, len(text) // 3)
        for start in range(0, len(text), step):
            piece = text[start : start + step]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return deltas


async def _health() -> dict[str, str]:
    return {"status": "ok"}


def create_app(
    settings: Settings | None = None, *, scenarios: Mapping[str, Scenario] | None = None
) -> FastAPI:
    """The simulator app. ``scenarios`` are added to the registered ones (``offline``,
    ``fill``; a name given here wins); a config picks one by name."""
    settings = settings or Settings()
    app = FastAPI(
        title="pactmesh model simulator",
        description="An OpenAI-compatible chat completions server with injected faults.",
        version="0.1.0",
    )
    app.state.simulator = Simulator(
        config=settings.config,
        scenarios={**SCENARIOS, **(scenarios or {})},
        log_size=settings.request_log_size,
        default_scenario=settings.scenario,
    )
    if settings.scenario == "offline":
        OfflineScenario().warm()
    app.include_router(openai_router)
    app.include_router(admin_router)
    app.add_api_route("/health/live", _health, methods=["GET"], tags=["health"])
    logger.info(
        "model simulator ready (scenarios: %s)", ", ".join({**SCENARIOS, **(scenarios or {})})
    )
    return app
