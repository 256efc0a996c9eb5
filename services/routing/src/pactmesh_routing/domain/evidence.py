"""Routing's offline evidence: nearest examples blended with the keyword rules.

The nearest-example classifier gives every workflow its best cosine; a softmax over them
(at the classifier's temperature) shares one unit of belief among the workflows. The
keyword rules share another unit in proportion to their scores. With keywords matching,
the two shares are averaged; with none, the examples decide alone.

The confidence is the winner's share times how related the request is to routing at all:
a request far from every example and matching no keyword ("tell me a joke") has a clear
winner only by accident, and must not be routed as if it were sure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pactmesh_reasoning.classifier import Classification

from pactmesh_routing.domain.classifier import matched_words

UNRELATED_COSINE = 0.15
"""MiniLM cosine at or below which a request shares nothing with any example."""
RELATED_COSINE = 0.35
"""Cosine from which a request is plainly on one of the examples' topics."""
FULL_KEYWORD_SCORE = 4.0
"""Keyword score that alone shows a request is on topic (a "refund" and a "broken")."""


@dataclass(frozen=True)
class Evidence:
    """The offline answer: a workflow, how sure, and why."""

    workflow: str
    confidence: float
    reason: str


def blend(
    *, text: str, nearest: Classification, temperature: float, keywords: Mapping[str, float]
) -> Evidence:
    """Combine ``nearest`` (over the candidate workflows) with ``keywords`` scores."""
    shares = _softmax(nearest.scores, temperature)
    matched = {w: s for w, s in keywords.items() if w in shares and s > 0}
    if matched:
        total = sum(matched.values())
        shares = {w: (share + matched.get(w, 0.0) / total) / 2 for w, share in shares.items()}
    workflow = max(shares, key=lambda w: shares[w])
    related = max(
        _ramp(nearest.similarity), min(1.0, max(matched.values(), default=0.0) / FULL_KEYWORD_SCORE)
    )
    confidence = round(shares[workflow] * related, 3)
    return Evidence(workflow, confidence, _reason(text, nearest, matched, shares, related))


def _softmax(scores: Mapping[str, float], temperature: float) -> dict[str, float]:
    top = max(scores.values())
    weights = {w: math.exp((s - top) / temperature) for w, s in scores.items()}
    total = sum(weights.values())
    return {w: weight / total for w, weight in weights.items()}


def _ramp(cosine: float) -> float:
    return min(1.0, max(0.0, (cosine - UNRELATED_COSINE) / (RELATED_COSINE - UNRELATED_COSINE)))


def _reason(
    text: str,
    nearest: Classification,
    keywords: Mapping[str, float],
    shares: Mapping[str, float],
    related: float,
) -> str:
    example = nearest.example if len(nearest.example) <= 80 else f"{nearest.example[:77]}..."
    said = [
        f"{w} {', '.join(matched_words(text, w))} ({score:g})"
        for w, score in sorted(keywords.items(), key=lambda pair: -pair[1])
    ]
    winner = max(shares, key=lambda w: shares[w])
    return (
        f"nearest example is {nearest.label} ({nearest.similarity:.2f} cosine): {example!r}; "
        f"keywords: {'; '.join(said) or 'none'}; {winner} has {shares[winner]:.2f} of the "
        f"blended belief, relatedness {related:.2f}"
    )[:1000]
