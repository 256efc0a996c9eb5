"""``python -m pactmesh_routing.evaluate``: routing's accuracy on its labelled requests.

Every request of the held-out evaluation set (each registered workflow's own records and
routing's ``data/human_triage.jsonl``; see ``pactmesh_routing.data``) goes through
``Router.route`` with the offline model (routing's nearest examples and keyword
rules, through ``structured_call``), whatever ``PACTMESH_MODELS_JSON`` says. Prints the
accuracy overall and per workflow, the confusion matrix, the human-triage rate and the
throughput, and writes every figure as JSON to ``--out``.

A request counts as correct when it reaches its labelled workflow; requests labelled
``human`` are labelled support-triage (where human triage happens), and how many of them
were actually flagged for a person is reported apart, as is the keyword-only baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pactmesh_reasoning.models import OFFLINE_MODEL, CallCounters, ModelRouter, ModelsConfig

from pactmesh_routing.adapters.models import chat_models, load_classifier
from pactmesh_routing.data import LabelledRequest, evaluation_set, load
from pactmesh_routing.data import examples as few_shot
from pactmesh_routing.domain.decision import Decision
from pactmesh_routing.domain.evaluation import render, score
from pactmesh_routing.domain.router import Router
from pactmesh_routing.settings import Settings

DEFAULT_OUT = Path(".cache/bench/routing-eval.json")


def offline_router(*, examples: Path | None = None, min_confidence: float) -> Router:
    """A ``Router`` whose every model is routing's offline model, over ``examples`` (the
    registered workflows' own by default)."""
    models = ModelRouter(
        ModelsConfig(), factory=chat_models(load_classifier(examples)), counters=CallCounters()
    )
    return Router(models=models, min_confidence=min_confidence)


async def run(
    router: Router, records: Sequence[LabelledRequest], *, concurrency: int = 1
) -> tuple[list[Decision], list[float], float]:
    """Each record's decision and latency (s), and the wall time of the whole run (s)."""
    gate = asyncio.Semaphore(concurrency)
    latencies = [0.0] * len(records)

    async def one(index: int, record: LabelledRequest) -> Decision:
        async with gate:
            started = time.perf_counter()
            decision = await router.route(text=record.text)
            latencies[index] = time.perf_counter() - started
            return decision

    started = time.perf_counter()
    decisions = await asyncio.gather(*(one(i, r) for i, r in enumerate(records)))
    return list(decisions), latencies, time.perf_counter() - started


async def evaluate(
    *, examples: Path | None, labelled: Path | None, min_confidence: float, concurrency: int
) -> dict[str, Any]:
    """Every figure of one evaluation run (the registry's examples and evaluation set
    unless files are given)."""
    records = load(labelled) if labelled is not None else evaluation_set()
    router = offline_router(examples=examples, min_confidence=min_confidence)
    started = time.perf_counter()
    await router.route(text="warm-up: load the embeddings and embed the examples")
    warm_up_s = time.perf_counter() - started
    decisions, latencies, wall_s = await run(router, records, concurrency=concurrency)
    report = {
        "model": OFFLINE_MODEL,
        "examples": len(load(examples) if examples is not None else few_shot()),
        "min_confidence": min_confidence,
        **score(records=records, decisions=decisions),
        "throughput_rps": round(len(records) / wall_s, 1),
        "concurrency": concurrency,
        "latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1),
            "p95": round(statistics.quantiles(latencies, n=20)[18] * 1000, 1),
        },
        "warm_up_s": round(warm_up_s, 2),
        "answered_by": dict(Counter(d.model or "no model" for d in decisions)),
    }
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """Run the evaluation, print the report and write the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--examples", type=Path, help="JSON lines; the registry's if unset")
    parser.add_argument("--labelled", type=Path, help="JSON lines; the registry's if unset")
    parser.add_argument("--min-confidence", type=float, default=Settings().min_confidence)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    report = asyncio.run(
        evaluate(
            examples=args.examples,
            labelled=args.labelled,
            min_confidence=args.min_confidence,
            concurrency=args.concurrency,
        )
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(render(report))
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
