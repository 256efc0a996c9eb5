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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pactmesh_reasoning.models import OFFLINE_MODEL, CallCounters, ModelRouter, ModelsConfig
from pactmesh_workflows.registry import registry

from pactmesh_routing.adapters.models import chat_models, load_classifier
from pactmesh_routing.data import LabelledRequest, evaluation_set, load
from pactmesh_routing.data import examples as few_shot
from pactmesh_routing.domain.classifier import classify
from pactmesh_routing.domain.decision import Decision
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


def score(records: Sequence[LabelledRequest], decisions: Sequence[Decision]) -> dict[str, Any]:
    """Accuracy (overall, per labelled workflow), confusion matrix, triage and fields."""
    pairs = list(zip(records, decisions, strict=True))
    in_scope = [(r, d) for r, d in pairs if not r.human]
    flagged = [d for r, d in pairs if r.human]
    automated = [(r, d) for r, d in pairs if not d.human_triage]
    return {
        "requests": len(pairs),
        "accuracy": _share(r.workflow == d.workflow for r, d in pairs),
        "per_workflow": {
            workflow: {
                "requests": sum(1 for r in records if r.workflow == workflow),
                "accuracy": _share(
                    d.workflow == r.workflow for r, d in pairs if r.workflow == workflow
                ),
            }
            for workflow in registry()
        },
        "confusion": confusion(pairs),
        "human_triage_rate": _share(d.human_triage for d in decisions),
        "human_flagged": {
            "requests": len(flagged),
            "sent_to_human_triage": sum(d.human_triage for d in flagged),
        },
        "in_scope_sent_to_human_triage": sum(d.human_triage for _, d in in_scope),
        "model_accuracy_in_scope": _share(r.workflow == d.proposed for r, d in in_scope),
        "automated": {
            "requests": len(automated),
            "accuracy": _share(r.workflow == d.workflow for r, d in automated),
        },
        "fields_exact": _share(r.fields == d.fields for r, d in pairs if r.fields is not None),
        "keyword_baseline_accuracy": _share(r.workflow == _keywords_only(r.text) for r in records),
        "misrouted": [
            {"text": r.text, "label": r.workflow, "routed": d.workflow, "confidence": d.confidence}
            for r, d in pairs
            if r.workflow != d.workflow
        ],
    }


def confusion(pairs: Iterable[tuple[LabelledRequest, Decision]]) -> dict[str, dict[str, int]]:
    """How many requests of each labelled workflow (rows) went to each workflow."""
    names = registry().names
    matrix = {label: dict.fromkeys(names, 0) for label in names}
    for record, decision in pairs:
        matrix[record.workflow][decision.workflow] += 1
    return matrix


def _keywords_only(text: str) -> str:
    fallback = registry().human_triage.name
    return classify(text=text, known_workflows=registry().names, fallback=fallback).workflow


def _share(flags: Iterable[object]) -> float:
    values = [bool(flag) for flag in flags]
    return round(sum(values) / len(values), 4) if values else 0.0


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
        **score(records, decisions),
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


def render(report: dict[str, Any]) -> str:
    """The figures as a short text report."""
    names = {w: w[:12] for w in registry()}
    lines = [
        f"routing evaluation: {report['requests']} requests, {report['model']}, "
        f"{report['examples']} examples, threshold {report['min_confidence']:g}",
        f"accuracy {report['accuracy']:.1%} (keywords alone "
        f"{report['keyword_baseline_accuracy']:.1%}; the model's choice on in-scope requests "
        f"{report['model_accuracy_in_scope']:.1%})",
    ]
    lines += [
        f"  {w:<22} {f['accuracy']:.1%} of {f['requests']}"
        for w, f in report["per_workflow"].items()
    ]
    lines.append("confusion (rows: label, columns: routed to)")
    lines.append(" " * 24 + " ".join(f"{names[w]:>12}" for w in registry()))
    for label, row in report["confusion"].items():
        lines.append(f"  {label:<22}" + " ".join(f"{row[w]:>12}" for w in registry()))
    flagged = report["human_flagged"]
    lines += [
        f"human triage {report['human_triage_rate']:.1%} of requests; "
        f"{flagged['sent_to_human_triage']}/{flagged['requests']} of those labelled human, "
        f"{report['in_scope_sent_to_human_triage']} in-scope ones",
        f"automated decisions {report['automated']['requests']}, "
        f"{report['automated']['accuracy']:.1%} correct; fields exact {report['fields_exact']:.1%}",
        f"throughput {report['throughput_rps']} requests/s at concurrency "
        f"{report['concurrency']}; latency p50 {report['latency_ms']['p50']} ms, "
        f"p95 {report['latency_ms']['p95']} ms; warm-up {report['warm_up_s']} s",
    ]
    return "\n".join(lines)


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
