"""A transparent keyword classifier: the offline baseline routing runs without a model.

Each workflow declares weighted patterns; the best-scoring workflow wins, with a
confidence that reflects both its score and its margin over the runner-up. The reason
names the patterns that matched, so every decision can be explained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict


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
            (r"money back", 3.0),
            (r"\b(broken|damaged|defective)\b", 1.5),
            (r"\breturn(ed)?\b", 1.0),
            (r"\bcharged? twice\b", 2.0),
        ),
    ),
    Rule(
        "procurement",
        (
            (r"\bpurchase order\b|\bPO-?\d+|\braise a PO\b|\ba PO\b", 3.0),
            (r"\bvendor\b", 1.5),
            (r"\bcontract\b", 1.0),
            (r"\b(buy|procure|purchase)\b", 2.0),
            (r"\bquote\b", 0.5),
        ),
    ),
    Rule(
        "supply-chain-reroute",
        (
            (r"\breroute\b|\bre-route\b|another route", 3.0),
            (r"\bshipment\b|\bSH-\d+", 2.0),
            (r"\bport\b|\bclosure\b|\bdisruption\b|\bstuck\b", 1.5),
            (r"\bcarrier\b", 1.0),
        ),
    ),
    Rule(
        "support-triage",
        (
            (r"\bpassword\b|\blog ?in\b|\baccount\b", 2.0),
            (r"\bwhere is my order\b|\btrack", 2.0),
            (r"\bsubscription\b|\bmembership\b|\bplan\b|\bcancel\b", 1.5),
            (r"\bhow (do|can) i\b", 1.0),
            (r"\bhelp\b|\bissue\b|\bproblem\b", 0.5),
        ),
    ),
)

_AMOUNT = re.compile(
    r"(?:[$€£]\s?(\d[\d,]*(?:\.\d+)?))|(\d[\d,]*(?:\.\d+)?)\s?(?:USD|EUR|GBP|dollars)", re.I
)
_ORDER = re.compile(r"\border\s*#?\s*(\d{3,})", re.I)
_PO = re.compile(r"\b(PO-\d+)\b", re.I)
_SHIPMENT = re.compile(r"\b(SH-\d+)\b", re.I)


class Decision(BaseModel):
    """A routing decision and why it was taken."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    confidence: float
    reason: str
    fields: dict[str, Any]


def extract_fields(text: str) -> dict[str, Any]:
    """Identifiers and amounts a workflow's input contract may need."""
    fields: dict[str, Any] = {}
    if m := _AMOUNT.search(text):
        fields["amount"] = float((m.group(1) or m.group(2)).replace(",", ""))
    if m := _ORDER.search(text):
        fields["order_id"] = m.group(1)
    if m := _PO.search(text):
        fields["po_number"] = m.group(1).upper()
    if m := _SHIPMENT.search(text):
        fields["shipment_id"] = m.group(1).upper()
    return fields


def classify(
    *, text: str, known_workflows: tuple[str, ...], fallback: str, requested: str | None = None
) -> Decision:
    """Choose a workflow for ``text`` among ``known_workflows``."""
    fields = extract_fields(text)
    if requested is not None and requested in known_workflows:
        return Decision(
            workflow=requested, confidence=1.0, reason="requested by the submitter", fields=fields
        )
    scored = sorted(
        (
            (sum(w for _, w in rule.matches(text)), rule)
            for rule in RULES
            if rule.workflow in known_workflows
        ),
        key=lambda pair: pair[0],
        reverse=True,
    )
    if not scored or scored[0][0] == 0:
        note = f"; requested workflow {requested!r} is not registered" if requested else ""
        return Decision(
            workflow=fallback, confidence=0.0, reason=f"no rule matched{note}", fields=fields
        )
    best_score, best = scored[0]
    runner_up = scored[1][0] if len(scored) > 1 else 0.0
    confidence = round(min(1.0, best_score / 4.0) * (best_score - runner_up) / best_score, 3)
    matched = ", ".join(p for p, _ in best.matches(text))
    return Decision(
        workflow=best.workflow,
        confidence=confidence,
        reason=f"matched {matched} (score {best_score:g}, runner-up {runner_up:g})",
        fields=fields,
    )
