"""Keyword rules and field extraction: the transparent half of routing's offline evidence.

Each workflow declares weighted patterns. ``keyword_scores`` sums the weights that match;
the offline model blends those scores with its nearest examples, and ``classify`` (the
keywords alone) is kept as the baseline the evaluation compares against. The best-scoring
workflow wins, with a confidence that reflects both its score and its margin over the
runner-up; reasons name the patterns that matched, so every decision can be explained.

``extract_fields`` finds the identifiers and amounts the workflows' input contracts need.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

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


RULES: tuple[Rule, ...] = (
    Rule(
        "refund",
        (
            (r"\brefund", 3.0),
            (r"money back|\breimburs", 3.0),
            (r"\b(broken|damaged|defective|faulty)\b", 1.5),
            (r"\breturn(ed)?\b", 1.0),
            (
                r"\b(charged?|billed|debited)\b.*\btwice\b|\bovercharged\b|\bcredit(ed)? .*back\b",
                2.0,
            ),
        ),
    ),
    Rule(
        "procurement",
        (
            (r"\bpurchase order\b|\bPO-?\d+|\bPO\b", 3.0),
            (r"\b(vendor|suppliers?)\b", 1.5),
            (r"\bcontract(or)?\b|\brequisition\b|\btender\b|\bsourc(e|ing)\b", 1.0),
            (r"\b(buy|procure|purchase|purchasing)\b", 2.0),
            (r"\bquotes?\b|\bpricing\b|\bbudget\b|\blicen[cs]es\b", 0.5),
        ),
    ),
    Rule(
        "supply-chain-reroute",
        (
            (
                r"\breroute\b|\bre-route\b|\b(another|alternative|new) route\b|\bdivert|\bredirect",
                3.0,
            ),
            (r"\bshipments?\b|\bSH-\d+", 2.0),
            (r"\bport\b|\bclosure\b|\bdisruption\b|\bstuck\b|\bstrike\b|\bcongest", 1.5),
            (
                r"\bcarriers?\b|\bfreight\b|\bcontainers?\b|\bcargo\b|\bvessel\b|\bconsignments?\b|\bcustoms\b",
                1.0,
            ),
        ),
    ),
    Rule(
        "support-triage",
        (
            (
                r"\bpassword\b|\blog ?in\b|\blog(ged|ging)? (in|out)\b|\blocked out\b|\baccount\b",
                2.0,
            ),
            (r"\bwhere is my order\b|\btrack", 2.0),
            (r"\bsubscription\b|\bmembership\b|\bplan\b|\bcancel\b", 1.5),
            (r"\bhow (do|can) i\b|^(how|where|what|when|is there|do you|can i)\b", 1.0),
            (r"\b(app|website|browser|e-?mail|profile|settings|error|crash(es)?)\b", 1.0),
            (r"\bhelp\b|\bissue\b|\bproblem\b", 0.5),
        ),
    ),
)

_NUMERAL = r"(\d[\d,]*(?:\.\d+)?)"
_AMOUNT = re.compile(rf"[$€£]\s?{_NUMERAL}|{_NUMERAL}\s?(?:USD|EUR|GBP|dollars|euros)", re.I)
_ORDER = re.compile(r"\border\s*#?\s*(\d{3,12})\b", re.I)
_PO = re.compile(r"\b(PO-\d+)\b", re.I)
_SHIPMENT = re.compile(r"\b(SH-\d+)\b", re.I)
# A capitalised name after "from", "with", "vendor" or "supplier": "from Acme Corp".
_VENDOR = re.compile(
    r"\b(?i:from|with|vendor|supplier)[:,]?\s+([A-Z][\w&.-]*(?:\s+[A-Z][\w&.-]*)?)"
)
VENDOR_WORKFLOW = "procurement"
"""The only workflow whose contract takes a vendor (elsewhere "from Rotterdam" is a place)."""


_IDENTIFIERS = (
    (re.compile(r"\b(order)\s*#?\s*\d{3,12}\b", re.I), r"\1"),
    (re.compile(r"\bSH-\d+\b", re.I), "the shipment"),
    (re.compile(r"\bPO-\d+\b", re.I), "the purchase order"),
)


def without_identifiers(text: str) -> str:
    """``text`` with order numbers, shipment and PO identifiers replaced by what they name.

    Embeddings compare what texts are about; the digits of an identifier would otherwise
    make "order 7345" look like any example that mentions an order number."""
    for pattern, replacement in _IDENTIFIERS:
        text = pattern.sub(replacement, text)
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
    """Identifiers and amounts a workflow's input contract may need; a vendor only when
    ``workflow`` is procurement or not yet known."""
    fields: dict[str, JsonValue] = {}
    if m := _AMOUNT.search(text):
        fields["amount"] = float((m.group(1) or m.group(2)).replace(",", ""))
    if m := _ORDER.search(text):
        fields["order_id"] = m.group(1)
    if m := _PO.search(text):
        fields["po_number"] = m.group(1).upper()
    if m := _SHIPMENT.search(text):
        fields["shipment_id"] = m.group(1).upper()
    if workflow in (None, VENDOR_WORKFLOW) and (m := _VENDOR.search(text)):
        fields["vendor"] = m.group(1).rstrip(".")
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
