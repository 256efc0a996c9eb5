"""Scoring routing decisions against labelled requests: accuracy overall and per
workflow, the confusion matrix, how often a person was asked, and a text report.

Pure functions over what ``python -m pactmesh_routing.evaluate`` collects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pactmesh_workflows.registry import registry

from pactmesh_routing.data import LabelledRequest
from pactmesh_routing.domain.classifier import classify
from pactmesh_routing.domain.decision import Decision


def score(*, records: Sequence[LabelledRequest], decisions: Sequence[Decision]) -> dict[str, Any]:
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
