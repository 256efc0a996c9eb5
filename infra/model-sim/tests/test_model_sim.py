"""The OpenAI-compatible model simulator (infra/model-sim): its wire format and its knobs.

Wire-format tests talk HTTP to a real server; the draws (seeding, the latency
distribution, the rates) are checked on the ``Simulator`` directly, where thousands of
requests cost nothing.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest
from pactmesh_model_sim.config import SimConfig
from pactmesh_model_sim.protocol import ChatCompletionRequest
from pactmesh_model_sim.scenarios import SCENARIOS
from pactmesh_model_sim.simulator import UNKNOWN_TOOL, Simulator
from pactmesh_model_sim.testing import SimAdmin
from pydantic import BaseModel, ConfigDict

TEXT = "Refund $120.50 for order ORD-4411, the parcel arrived damaged"


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str
    quantity: int


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: float
    priority: Literal["low", "high"]
    items: list[Item]
    note: str | None = None


TOOL = {
    "type": "function",
    "function": {"name": "Order", "parameters": Order.model_json_schema()},
}


@pytest.fixture
def client(sim_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_url, timeout=10) as http:
        yield http


def completion(text: str = TEXT, **extra: Any) -> dict[str, Any]:
    return {"model": "sim-a", "messages": [{"role": "user", "content": text}], **extra}


def events(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]


def test_a_plain_answer_has_openais_shape(sim: SimAdmin, client: httpx.Client) -> None:
    body = client.post("/v1/chat/completions", json=completion("hello")).json()
    assert body["object"] == "chat.completion"
    (choice,) = body["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Simulated answer to: hello",
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 4


def test_max_tokens_cuts_the_answer(sim: SimAdmin, client: httpx.Client) -> None:
    body = client.post("/v1/chat/completions", json=completion("a b c d", max_tokens=3)).json()
    (choice,) = body["choices"]
    assert (choice["message"]["content"], choice["finish_reason"]) == (
        "Simulated answer to:",
        "length",
    )


def test_a_tool_call_fills_the_schema_from_the_text(sim: SimAdmin, client: httpx.Client) -> None:
    request = completion("high priority: 3 units, $120.50 total", tools=[TOOL])
    body = client.post("/v1/chat/completions", json=request).json()
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "Order"
    arguments = json.loads(call["function"]["arguments"])
    order = Order.model_validate(arguments)  # nested $defs resolved, every field present
    assert (order.amount, order.priority) == (120.5, "high")
    assert order.items[0].quantity == 3


def test_tool_choice_names_the_tool_and_an_unknown_one_is_a_400(
    sim: SimAdmin, client: httpx.Client
) -> None:
    other = {"type": "function", "function": {"name": "Other", "parameters": {}}}
    choice = {"type": "function", "function": {"name": "Order"}}
    body = client.post(
        "/v1/chat/completions", json=completion(tools=[other, TOOL], tool_choice=choice)
    ).json()
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "Order"
    missing = {"type": "function", "function": {"name": "Missing"}}
    response = client.post(
        "/v1/chat/completions", json=completion(tools=[TOOL], tool_choice=missing)
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_json_schema_response_format_answers_json_content(
    sim: SimAdmin, client: httpx.Client
) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "Order", "schema": Order.model_json_schema()},
    }
    body = client.post(
        "/v1/chat/completions", json=completion(response_format=response_format)
    ).json()
    Order.model_validate_json(body["choices"][0]["message"]["content"])


def test_a_stream_is_openais_server_sent_events(sim: SimAdmin, client: httpx.Client) -> None:
    request = completion("one two three", stream=True, stream_options={"include_usage": True})
    response = client.post("/v1/chat/completions", json=request)
    assert response.headers["content-type"].startswith("text/event-stream")
    data = events(response)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Simulated answer to: one two three"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 6


def test_a_streamed_tool_call_reassembles(sim: SimAdmin, client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=completion(tools=[TOOL], stream=True))
    chunks = [json.loads(item) for item in events(response)[:-1]]
    deltas = [
        c["choices"][0]["delta"] for c in chunks if c["choices"][0]["delta"].get("tool_calls")
    ]
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "Order"
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas)
    Order.model_validate_json(arguments)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def _read(response: httpx.Response, into: list[str]) -> None:
    for line in response.iter_lines():
        into.append(line)


def _pieces(lines: list[str]) -> list[str]:
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    return [c["choices"][0]["delta"]["content"] for c in chunks if c["choices"]][1:]


def test_a_stream_that_dies_drops_the_connection_after_its_first_tokens(
    sim: SimAdmin, sim_url: str
) -> None:
    sim.configure(fail_next=["stream_dies"], stream_fault_after_tokens=3)
    lines: list[str] = []
    with (
        httpx.Client(base_url=sim_url, timeout=10) as http,
        http.stream("POST", "/v1/chat/completions", json=completion(stream=True)) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        _read(response, lines)
    assert _pieces(lines) == ["Simulated", " answer", " to:"]
    assert "data: [DONE]" not in lines
    assert sim.stats()["by_outcome"] == {"stream_dies": 1}


def test_a_stream_that_stalls_sends_nothing_more(sim: SimAdmin, sim_url: str) -> None:
    sim.configure(fail_next=["stream_stalls"], stream_fault_after_tokens=2)
    lines: list[str] = []
    timeout = httpx.Timeout(10, read=0.5)
    with (
        httpx.Client(base_url=sim_url, timeout=timeout) as http,
        http.stream("POST", "/v1/chat/completions", json=completion(stream=True)) as response,
        pytest.raises(httpx.ReadTimeout),
    ):
        _read(response, lines)
    assert _pieces(lines) == ["Simulated", " answer"]
    assert sim.stats()["by_outcome"] == {"stream_stalls": 1}


def test_a_stream_fault_leaves_an_answer_that_is_not_streamed_alone(
    sim: SimAdmin, client: httpx.Client
) -> None:
    sim.configure(fail_next=["stream_dies"])
    body = client.post("/v1/chat/completions", json=completion("hello")).json()
    assert body["choices"][0]["message"]["content"] == "Simulated answer to: hello"
    assert sim.stats()["by_outcome"] == {"ok": 1}


def test_a_429_carries_retry_after_and_openais_error(sim: SimAdmin, client: httpx.Client) -> None:
    sim.configure(fail_next=["429", "5xx"], retry_after_s=1.5)
    limited = client.post("/v1/chat/completions", json=completion())
    assert limited.status_code == 429
    assert (limited.headers["retry-after"], limited.headers["retry-after-ms"]) == ("2", "1500")
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    failed = client.post("/v1/chat/completions", json=completion())
    assert failed.status_code == 503
    assert client.post("/v1/chat/completions", json=completion()).status_code == 200
    assert sim.stats()["by_outcome"] == {"429": 1, "5xx": 1, "ok": 1}


@pytest.mark.parametrize(
    "kind", ["invalid_json", "hallucinated_field", "out_of_range", "unknown_tool"]
)
def test_each_kind_of_malformed_answer(sim: SimAdmin, client: httpx.Client, kind: str) -> None:
    sim.configure(fail_next=[kind])
    body = client.post("/v1/chat/completions", json=completion(tools=[TOOL])).json()
    call = body["choices"][0]["message"]["tool_calls"][0]["function"]
    if kind == "invalid_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(call["arguments"])
        return
    arguments = json.loads(call["arguments"])
    if kind == "unknown_tool":
        assert call["name"] == UNKNOWN_TOOL
    elif kind == "hallucinated_field":
        assert set(arguments) - set(Order.model_fields)
    else:
        assert arguments["amount"] in (12050.0, -121.5)
    assert sim.requests()[-1]["outcome"] == kind


def test_per_model_configs_and_the_model_list(sim: SimAdmin, client: httpx.Client) -> None:
    sim.configure("sim-broken", rate_5xx=1.0)
    broken = completion(model="sim-broken")
    assert client.post("/v1/chat/completions", json=broken).status_code == 503
    assert client.post("/v1/chat/completions", json=completion()).status_code == 200
    models = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert models == ["sim-a", "sim-broken"]
    assert client.get("/sim/config").json()["models"]["sim-broken"]["rate_5xx"] == 1.0
    assert client.delete("/sim/config/models/sim-broken").status_code == 204
    assert client.post("/v1/chat/completions", json=broken).status_code == 200


@pytest.mark.parametrize(
    "config",
    [{"rate_429": 0.7, "rate_5xx": 0.5}, {"scenario": "nope"}, {"rate_429": 2}, {"x": 1}],
)
def test_a_bad_config_is_refused(
    sim: SimAdmin, client: httpx.Client, config: dict[str, Any]
) -> None:
    assert client.put("/sim/config", json=config).status_code == 422


def simulator(**config: Any) -> Simulator:
    # "fill" as the default, as the served simulator of these tests (``serve_in_thread``)
    return Simulator(config=SimConfig(**config), scenarios=SCENARIOS, default_scenario="fill")


def outcomes(sim: Simulator, count: int) -> list[str]:
    return [sim.decide("m").outcome for _ in range(count)]


def test_the_same_seed_gives_the_same_outcomes() -> None:
    config = {"rate_429": 0.1, "rate_5xx": 0.1, "malformed_rate": 0.3, "seed": 5}
    first, second = simulator(**config), simulator(**config)
    assert outcomes(first, 200) == outcomes(second, 200)
    assert outcomes(simulator(**{**config, "seed": 6}), 200) != outcomes(second, 200)
    first.reset()
    assert outcomes(first, 200) == outcomes(simulator(**config), 200)


def test_rates_are_honoured() -> None:
    counts = Counter(
        outcomes(simulator(rate_429=0.1, rate_5xx=0.05, malformed_rate=0.2, seed=1), 20_000)
    )
    assert counts["429"] / 20_000 == pytest.approx(0.10, abs=0.01)
    assert counts["5xx"] / 20_000 == pytest.approx(0.05, abs=0.01)
    malformed = sum(counts[k] for k in ("invalid_json", "hallucinated_field", "out_of_range"))
    malformed += counts["unknown_tool"]
    assert malformed / 20_000 == pytest.approx(0.85 * 0.2, abs=0.01)
    assert min(counts[k] for k in ("invalid_json", "unknown_tool")) > 700  # spread evenly


def test_malformed_kinds_follow_their_weights() -> None:
    sim = simulator(malformed_rate=1.0, malformed_kinds={"out_of_range": 3, "unknown_tool": 1})
    counts = Counter(outcomes(sim, 4000))
    assert set(counts) == {"out_of_range", "unknown_tool"}
    assert counts["out_of_range"] / 4000 == pytest.approx(0.75, abs=0.03)


def test_lognormal_latency_has_the_configured_median_and_spread() -> None:
    sim = simulator(latency={"kind": "lognormal", "median_ms": 200, "sigma": 0.5, "max_ms": 5000})
    delays = [sim.decide("m").delay_s for _ in range(5000)]
    assert statistics.median(delays) == pytest.approx(0.2, rel=0.05)
    quantiles = statistics.quantiles(delays, n=100)
    # exp(0.5 * 1.645) for the 95th percentile of a lognormal with sigma 0.5
    assert quantiles[94] / 0.2 == pytest.approx(2.276, rel=0.08)
    assert max(delays) <= 5.0


def test_fail_next_comes_before_the_rates_and_in_order() -> None:
    sim = simulator(rate_5xx=1.0, fail_next=["429", "ok", "unknown_tool"])
    assert outcomes(sim, 4) == ["429", "ok", "unknown_tool", "5xx"]


def test_a_malformation_that_does_not_apply_is_counted_as_ok() -> None:
    sim = simulator(fail_next=["unknown_tool"])
    request = ChatCompletionRequest.model_validate(completion())
    answer = sim.answer(request, sim.decide("sim-a"))
    assert (answer.outcome, answer.content) == ("ok", f"Simulated answer to: {TEXT}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_python_m_serves_on_the_configured_port_with_the_env_config() -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PACTMESH_MODEL_SIM_PORT": str(port),
        "PACTMESH_MODEL_SIM_CONFIG": json.dumps({"rate_5xx": 1.0}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pactmesh_model_sim"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the simulator exited"
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.1)
        response = httpx.post(f"{base}/v1/chat/completions", json=completion(), timeout=5)
        assert response.status_code == 503
    finally:
        process.terminate()
        process.wait(timeout=10)
