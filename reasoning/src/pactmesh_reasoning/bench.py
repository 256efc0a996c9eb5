"""``python -m pactmesh_reasoning.bench``: what schema-first outputs cost per call.

Against the offline model (so the model's own time is small and steady), each of
``--calls`` rounds times, in turn:

* ``model``: the chat model with the tool bound, called directly;
* ``router``: the same call through ``ModelRouter`` (latency budget, fallback chain);
* ``structured``: ``structured_call`` (the router call plus strict parsing and a
  business validator).

Prints one JSON object with the median and 95th percentile of each, in microseconds,
and the medians' differences: the router's overhead, and validation's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pactmesh_reasoning.models import CallCounters, ModelRouter, ModelsConfig
from pactmesh_reasoning.offline import OfflineChatModel
from pactmesh_reasoning.structured import structured_call

PROMPT = "Please refund $120.50 for order ORD-4411; the parcel arrived damaged."


class Refund(BaseModel):
    """The extraction contract the benchmark asks for."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    amount: float = Field(gt=0)
    reason: str


def _in_range(value: Refund) -> list[str]:
    return [] if value.amount <= 5000 else ["amount: above 5000"]


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1e6


async def _run(calls: int) -> dict[str, Any]:
    model = OfflineChatModel()
    bound = model.bind_tools([Refund], tool_choice="Refund")
    router = ModelRouter(ModelsConfig(), factory=lambda _spec: model, counters=CallCounters())

    async def direct() -> object:
        return await bound.ainvoke(PROMPT)

    async def routed() -> object:
        return await router.ainvoke("extraction", PROMPT, tools=[Refund], tool_choice="Refund")

    async def structured() -> object:
        result = await structured_call(
            "extraction", schema=Refund, prompt=PROMPT, validators=[_in_range], router=router
        )
        assert result.status == "valid"
        return result

    variants = {"model": direct, "router": routed, "structured": structured}
    for call in variants.values():  # warm up: imports, caches
        for _ in range(10):
            await call()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(calls):  # interleaved, so drift affects every variant alike
        for name, call in variants.items():
            samples[name].append(await _timed(call))
    report: dict[str, Any] = {"calls": calls}
    for name, values in samples.items():
        report[f"{name}_median_us"] = round(statistics.median(values), 1)
        report[f"{name}_p95_us"] = round(statistics.quantiles(values, n=20)[18], 1)
    report["router_overhead_us"] = round(report["router_median_us"] - report["model_median_us"], 1)
    report["validation_overhead_us"] = round(
        report["structured_median_us"] - report["router_median_us"], 1
    )
    return report


def main() -> None:
    """Run the benchmark and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_run(args.calls))))


if __name__ == "__main__":
    main()
