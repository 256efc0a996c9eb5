"""Keyword rules and field extraction: the transparent half of routing's offline evidence.

Each workflow declares weighted patterns. ``keyword_scores`` sums the weights that match;
the offline model blends those scores with its nearest examples, and ``classify`` (the
keywords alone) is kept as the baseline the evaluation compares against. The best-scoring
workflow wins, with a confidence that reflects both its score and its margin over the
runner-up; reasons name the patterns that matched, so every decision can be explained.

``extract_fields`` finds the identifiers and amounts the workflows' input contracts need.
Keywords and fields are each workflow's own, declared in its definition.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from pactmesh_workflows.fields import IdentifierField
from pactmesh_workflows.registry import registry
from pydantic import JsonValue

from pactmesh_routing.domain.decision import Decision


@dataclass(frozen=True)
class Rule:
    """Patterns that point to one workflow."""

    workflow: str
    patterns: tuple[tuple[str, float], ...]

    def matches(self, text: str) -> list[tuple[str, float]]:
        """The (pattern, weight) pairs found in ``text``."""
        return [(p, w) for p, w in self.patterns if re.search(p, text, re.IGNORECASE)]


RULES: tuple[Rule, ...] = tuple(Rule(n, d.routing.keywords) for n, d in registry().items())
"""Each registered workflow's keywords."""


def without_identifiers(text: str) -> str:
    """``text`` with identifiers (order numbers, shipment and PO ids...) replaced by what
    they name.

    Embeddings compare what texts are about; the digits of an identifier would otherwise
    make "order 7345" look like any example that mentions an order number."""
    for field in registry().fields:
        if isinstance(field, IdentifierField) and field.stands_for:
            text = field.find.sub(field.stands_for, text)
    return text


def keyword_scores(text: str, *, workflows: Collection[str] | None = None) -> dict[str, float]:
    """Each workflow's (among ``workflows``, default all) summed weight of matching rules."""
    return {
        rule.workflow: sum(weight for _, weight in rule.matches(text))
        for rule in RULES
        if workflows is None or rule.workflow in workflows
    }


def matched_words(text: str, workflow: str) -> list[str]:
    """What ``text`` says that matches ``workflow``'s patterns, one item per pattern."""
    found = (
        re.search(pattern, text, re.IGNORECASE)
        for rule in RULES
        if rule.workflow == workflow
        for pattern, _ in rule.matches(text)
    )
    return [repr(m.group(0)) for m in found if m is not None]


def extract_fields(text: str, *, workflow: str | None = None) -> dict[str, JsonValue]:
    """Every registered field ``text`` states; a field a workflow scopes to itself (a
    vendor, for procurement) only for that workflow or before one is chosen."""
    own = registry()[workflow].routing.fields if workflow and workflow in registry() else ()
    fields: dict[str, JsonValue] = {}
    for field in registry().fields:
        if field.scoped and workflow is not None and field not in own:
            continue
        value = field.extract(text)
        if value is not None:
            fields[field.name] = value
    return fields


def classify(
    *, text: str, known_workflows: tuple[str, ...], fallback: str, requested: str | None = None
) -> Decision:
    """Choose a workflow for ``text`` among ``known_workflows`` by keywords alone."""
    if requested is not None and requested in known_workflows:
        fields = extract_fields(text, workflow=requested)
        return Decision(
            workflow=requested, confidence=1.0, reason="requested by the submitter", fields=fields
        )
    scores = keyword_scores(text, workflows=known_workflows)
    ranked = sorted(scores, key=lambda workflow: scores[workflow], reverse=True)
    if not ranked or scores[ranked[0]] == 0:
        note = f"; requested workflow {requested!r} is not registered" if requested else ""
        return Decision(
            workflow=fallback,
            confidence=0.0,
            reason=f"no rule matched{note}",
            fields=extract_fields(text),
        )
    best, best_score = ranked[0], scores[ranked[0]]
    runner_up = scores[ranked[1]] if len(ranked) > 1 else 0.0
    confidence = round(min(1.0, best_score / 4.0) * (best_score - runner_up) / best_score, 3)
    matched = ", ".join(matched_words(text, best))
    return Decision(
        workflow=best,
        confidence=confidence,
        reason=f"matched {matched} (score {best_score:g}, runner-up {runner_up:g})",
        fields=extract_fields(text, workflow=best),
    )
