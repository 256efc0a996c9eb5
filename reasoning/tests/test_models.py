"""Model chains against the model simulator, through the real OpenAI client.

The simulator runs as a real HTTP server (in a thread, on a free loopback port); each
model of a chain is built by ``init_chat_model("openai:...")``, i.e. langchain-openai's
``ChatOpenAI`` with ``max_retries=0``, so what is tested is the chain's own handling of
budgets, 429s and failures over the client's real request path. Each test gives the
client its own ``httpx.AsyncClient``: langchain-openai otherwise shares one per base URL
across the process, and its connections would outlive each test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from pactmesh_model_sim.testing import SimAdmin
from pactmesh_reasoning.models import (
    OFFLINE_MODEL,
    AllModelsFailed,
    CallCounters,
    ModelConfigError,
    ModelRouter,
    ModelsConfig,
    ModelSpec,
    RoleConfig,
    answered_by,
    build_chat_model,
    failure_reason,
    load_models_config,
    retry_after_s,
)
from pydantic import ValidationError


def spec(sim: SimAdmin, name: str, *, budget: float = 5.0) -> ModelSpec:
    return ModelSpec(
        model=f"openai:{name}",
        base_url=sim.openai_base_url,
        api_key="sk-sim-test",
        latency_budget_s=budget,
    )


def router(http: httpx.AsyncClient, *chain: ModelSpec) -> ModelRouter:
    role = RoleConfig(primary=chain[0], fallbacks=list(chain[1:]))
    return ModelRouter(
        ModelsConfig(routing=role, extraction=role, drafting=role),
        factory=lambda s: build_chat_model(s, **({} if s.offline else {"http_async_client": http})),
        counters=CallCounters(),
    )


async def test_primary_answers_and_the_answer_names_it(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    chain = router(http, spec(sim, "sim-a"), spec(sim, "sim-b"))
    answer = await chain.ainvoke("routing", "Where is my parcel?")
    assert answer.text == "Simulated answer to: Where is my parcel?"
    assert answered_by(answer) == "openai:sim-a"
    assert sim.stats()["by_model"] == {"sim-a": {"ok": 1}}
    counts = chain.counters.snapshot()["openai:sim-a"]
    assert (counts.calls, counts.answered, counts.fell_back) == (1, 1, 0)


async def test_a_model_over_its_latency_budget_hands_the_call_on(
    sim: SimAdmin, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    sim.configure("sim-slow", latency={"kind": "fixed", "ms": 2000})
    chain = router(http, spec(sim, "sim-slow", budget=0.3), spec(sim, "sim-fast"))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="pactmesh_reasoning.models"):
        answer = await chain.ainvoke("routing", "hello")
    elapsed = time.monotonic() - started
    assert answered_by(answer) == "openai:sim-fast"
    assert 0.3 <= elapsed < 1.5, elapsed
    counts = chain.counters.snapshot()
    assert (counts["openai:sim-slow"].timeouts, counts["openai:sim-slow"].fell_back) == (1, 1)
    assert counts["openai:sim-fast"].answered == 1
    assert "openai:sim-slow failed for routing (timeout" in caplog.text
    assert "falling back to openai:sim-fast" in caplog.text


async def test_a_429_asking_more_than_the_budget_moves_to_the_next_model(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    sim.configure("sim-a", fail_next=["429"], retry_after_s=5)
    chain = router(http, spec(sim, "sim-a", budget=1.0), spec(sim, "sim-b"))
    started = time.monotonic()
    answer = await chain.ainvoke("routing", "hello")
    assert time.monotonic() - started < 1.0  # no waiting for a Retry-After it cannot afford
    assert answered_by(answer) == "openai:sim-b"
    counts = chain.counters.snapshot()["openai:sim-a"]
    assert (counts.rate_limited, counts.retry_waits, counts.fell_back) == (1, 0, 1)
    assert sim.stats()["by_model"] == {"sim-a": {"429": 1}, "sim-b": {"ok": 1}}


async def test_a_5xx_moves_to_the_next_model(sim: SimAdmin, http: httpx.AsyncClient) -> None:
    sim.configure("sim-a", rate_5xx=1.0)
    chain = router(http, spec(sim, "sim-a"), spec(sim, "sim-b"))
    answer = await chain.ainvoke("routing", "hello")
    assert answered_by(answer) == "openai:sim-b"
    assert chain.counters.snapshot()["openai:sim-a"].failed == 1


async def test_the_offline_model_can_close_a_chain(sim: SimAdmin, http: httpx.AsyncClient) -> None:
    sim.configure(rate_5xx=1.0)
    offline = ModelSpec(model=OFFLINE_MODEL)
    chain = router(http, spec(sim, "sim-a"), spec(sim, "sim-b"), offline)
    answer = await chain.ainvoke("drafting", "The delivery is late.")
    assert answered_by(answer) == OFFLINE_MODEL
    assert answer.text.startswith("Thank you for your message")


async def test_a_chain_where_every_model_fails_says_which_were_tried(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    sim.configure(rate_5xx=1.0)
    chain = router(http, spec(sim, "sim-a"), spec(sim, "sim-b"))
    with pytest.raises(AllModelsFailed, match="tried openai:sim-a, openai:sim-b") as caught:
        await chain.ainvoke("routing", "hello")
    assert caught.value.code == "models_unavailable"
    assert sim.stats()["by_outcome"] == {"5xx": 2}


async def test_a_retry_after_within_budget_waits_on_the_same_model_without_blocking_others(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    sim.configure("sim-limited", fail_next=["429"], retry_after_s=0.5)
    sim.configure("sim-free", latency={"kind": "fixed", "ms": 100})
    limited = router(http, spec(sim, "sim-limited", budget=3.0), spec(sim, "sim-other"))
    free = router(http, spec(sim, "sim-free"))
    finished: list[str] = []

    async def call(chain: ModelRouter, label: str) -> tuple[str | None, float]:
        started = time.monotonic()
        answer = await chain.ainvoke("routing", f"hello from {label}")
        finished.append(label)
        return answered_by(answer), time.monotonic() - started

    (limited_by, limited_s), (free_by, free_s) = await asyncio.gather(
        call(limited, "limited"), call(free, "free")
    )
    assert finished == ["free", "limited"]
    assert limited_by == "openai:sim-limited"  # waited, then answered by the same model
    assert limited_s >= 0.5
    assert free_by == "openai:sim-free"
    assert free_s < 0.45  # the other call went on during the wait
    counts = limited.counters.snapshot()["openai:sim-limited"]
    assert (counts.calls, counts.retry_waits, counts.answered, counts.fell_back) == (1, 1, 1, 0)
    assert sim.stats()["by_model"]["sim-limited"] == {"429": 1, "ok": 1}


async def test_streaming_through_the_openai_client_yields_tokens_in_order(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    sim.configure(stream_chunk_ms=2)
    chain = router(http, spec(sim, "sim-a"))
    text = "one two three four five six seven"
    pieces = [piece async for piece in chain.astream("drafting", text)]
    assert pieces == ["Simulated", " answer", " to:"] + [f" {word}" for word in text.split()]
    assert sim.requests()[-1]["body"]["stream"] is True


async def test_a_stream_falls_back_before_its_first_token(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    sim.configure("sim-a", fail_next=["5xx"])
    chain = router(http, spec(sim, "sim-a"), spec(sim, "sim-b"))
    model = chain.chat_for("drafting")
    chunks = [chunk async for chunk in model.astream("hi there")]
    assert "".join(str(c.content) for c in chunks) == "Simulated answer to: hi there"
    assert answered_by(chunks[0]) == "openai:sim-b"
    assert sim.stats()["by_model"] == {"sim-a": {"5xx": 1}, "sim-b": {"ok": 1}}


async def test_a_stream_that_starts_too_late_falls_back(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    sim.configure("sim-slow", latency={"kind": "fixed", "ms": 2000})
    chain = router(http, spec(sim, "sim-slow", budget=0.3), spec(sim, "sim-fast"))
    pieces = [piece async for piece in chain.astream("drafting", "quick")]
    assert "".join(pieces) == "Simulated answer to: quick"
    assert chain.counters.snapshot()["openai:sim-slow"].timeouts == 1


async def test_a_stream_that_dies_after_three_tokens_restarts_on_the_next_model(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    sim.configure("sim-a", fail_next=["stream_dies"], stream_fault_after_tokens=3)
    chain = router(http, spec(sim, "sim-a"), spec(sim, "sim-b"))
    pieces = [piece async for piece in chain.astream_answer("drafting", "hi there")]

    assert [(p.text, p.model, p.restarted) for p in pieces[:4]] == [
        ("Simulated", "openai:sim-a", False),
        (" answer", "openai:sim-a", False),
        (" to:", "openai:sim-a", False),
        ("Simulated", "openai:sim-b", True),
    ]
    restart = next(i for i, p in enumerate(pieces) if p.restarted)
    assert "".join(p.text for p in pieces[restart:]) == "Simulated answer to: hi there"
    assert {p.model for p in pieces[restart:]} == {"openai:sim-b"}
    counts = chain.counters.snapshot()
    assert (counts["openai:sim-a"].failed, counts["openai:sim-a"].fell_back) == (1, 1)


async def test_a_stream_that_stalls_midway_restarts_on_the_next_model(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    sim.configure("sim-a", fail_next=["stream_stalls"], stream_fault_after_tokens=2)
    chain = router(http, spec(sim, "sim-a", budget=0.5), spec(sim, "sim-b"))
    started = time.monotonic()
    pieces = [piece async for piece in chain.astream_answer("drafting", "quick")]
    assert time.monotonic() - started < 5
    assert [p.text for p in pieces[:2]] == ["Simulated", " answer"]
    assert pieces[2].restarted
    assert pieces[2].model == "openai:sim-b"
    assert chain.counters.snapshot()["openai:sim-a"].timeouts == 1


async def test_when_every_model_breaks_off_the_stream_says_all_failed(
    sim: SimAdmin, http: httpx.AsyncClient
) -> None:
    sim.configure(fail_next=["stream_dies"] * 2, stream_fault_after_tokens=1)
    chain = router(http, spec(sim, "sim-a"), spec(sim, "sim-b"))
    seen: list[tuple[str, bool]] = []

    async def read() -> None:
        async for piece in chain.astream_answer("drafting", "hello"):
            seen.append((piece.text, piece.restarted))

    with pytest.raises(AllModelsFailed, match="openai:sim-a, openai:sim-b"):
        await read()
    assert seen == [("Simulated", False), ("Simulated", True)]


def test_every_role_is_the_offline_model_when_nothing_is_configured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="pactmesh_reasoning.models"):
        config = load_models_config({})
    for role in ("routing", "extraction", "drafting"):
        assert [s.model for s in config.role(role).chain] == [OFFLINE_MODEL]
    assert "offline model pactmesh-offline:default" in caplog.text
    assert "not an LLM" in caplog.text


def test_models_come_from_json_in_the_environment() -> None:
    document = {
        "routing": {
            "primary": {"model": "openai:gpt-4o-mini", "latency_budget_s": 2},
            "fallbacks": [{"model": "anthropic:claude-haiku-4-5"}, {"model": OFFLINE_MODEL}],
        }
    }
    config = load_models_config({"PACTMESH_MODELS_JSON": json.dumps(document)})
    chain = config.routing.chain
    assert [s.model for s in chain] == [
        "openai:gpt-4o-mini",
        "anthropic:claude-haiku-4-5",
        OFFLINE_MODEL,
    ]
    assert chain[0].latency_budget_s == 2
    assert chain[0].provider == "openai"
    assert chain[2].offline
    assert config.drafting.chain == [ModelSpec()]


def test_models_come_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[extraction.primary]\nmodel = "openai:gpt-4o"\ntemperature = 0.2\n'
        '[[extraction.fallbacks]]\nmodel = "pactmesh-offline:default"\n',
        encoding="utf-8",
    )
    config = load_models_config({"PACTMESH_MODELS_FILE": str(path)})
    assert [s.model for s in config.extraction.chain] == ["openai:gpt-4o", OFFLINE_MODEL]
    assert config.extraction.primary.temperature == 0.2


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PACTMESH_MODELS_JSON": "{}", "PACTMESH_MODELS_FILE": "x.toml"}, "not both"),
        ({"PACTMESH_MODELS_JSON": "{not json"}, "PACTMESH_MODELS_JSON is invalid"),
        ({"PACTMESH_MODELS_JSON": '{"routing": {"primary": {"modle": "x"}}}'}, "modle"),
        ({"PACTMESH_MODELS_JSON": '{"ranking": {}}'}, "ranking"),
        ({"PACTMESH_MODELS_FILE": "/nonexistent/models.json"}, "No such file"),
    ],
)
def test_a_bad_models_configuration_says_what_to_fix(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ModelConfigError, match=message):
        load_models_config(environ)


def test_a_placeholder_api_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        ModelSpec(model="openai:gpt-4o", api_key="changeme")


def test_an_api_key_can_come_from_a_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_KEY", "sk-from-env")
    model = build_chat_model(
        ModelSpec(model="openai:sim-a", base_url="http://127.0.0.1:9/v1", api_key_env="SIM_KEY")
    )
    assert model.openai_api_key.get_secret_value() == "sk-from-env"  # type: ignore[attr-defined]
    monkeypatch.delenv("SIM_KEY")
    with pytest.raises(ModelConfigError, match="SIM_KEY"):
        build_chat_model(ModelSpec(model="openai:sim-a", api_key_env="SIM_KEY"))


def test_failures_are_told_apart_from_bugs() -> None:
    class Limited(Exception):
        status_code = 429

    assert failure_reason(TimeoutError()) == "timeout"
    assert failure_reason(Limited()) == "rate_limited"
    assert failure_reason(ConnectionRefusedError()) == "unavailable"
    assert failure_reason(httpx.ReadTimeout("slow")) == "timeout"
    assert failure_reason(httpx.RemoteProtocolError("peer closed mid-answer")) == "unavailable"
    assert failure_reason(TypeError("a bug")) is None
    assert failure_reason(KeyError("a bug")) is None


def test_retry_after_is_read_from_milliseconds_seconds_or_a_date() -> None:
    def limited(headers: dict[str, str]) -> Exception:
        error = Exception("429")
        error.response = httpx.Response(429, headers=headers)  # type: ignore[attr-defined]
        return error

    assert retry_after_s(limited({"retry-after-ms": "1500", "retry-after": "2"})) == 1.5
    assert retry_after_s(limited({"retry-after": "3"})) == 3.0
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after_s(limited({"retry-after": date}), now=1445412470.0) == 10.0
    assert retry_after_s(limited({})) is None
    assert retry_after_s(Exception("no response")) is None


def test_build_all_builds_every_model_of_the_roles_and_leaves_a_broken_one_to_its_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    built: list[str] = []

    def factory(s: ModelSpec) -> BaseChatModel:
        if s.model == "openai:broken":
            raise ModelConfigError("openai:broken: api_key_env names NOPE, unset")
        built.append(s.model)
        return build_chat_model(ModelSpec())

    drafting = RoleConfig(
        primary=ModelSpec(model="openai:broken"), fallbacks=[ModelSpec(model="openai:sim-b")]
    )
    routing = RoleConfig(primary=ModelSpec(model="openai:sim-r"))
    models = ModelRouter(
        ModelsConfig(routing=routing, drafting=drafting), factory=factory, counters=CallCounters()
    )

    models.build_all(("routing",))
    assert built == ["openai:sim-r"]
    models.build_all()
    assert sorted(built) == ["openai:sim-b", "openai:sim-r", OFFLINE_MODEL]  # extraction's
    assert "openai:broken (drafting) not built at start-up" in caplog.text
    with pytest.raises(ModelConfigError):  # as before: the call says what is wrong
        models.chat_for("drafting")
