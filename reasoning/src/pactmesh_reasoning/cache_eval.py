"""The semantic cache's threshold, measured: precision and recall on labelled pairs.

``data/semantic_cache_pairs.jsonl`` holds pairs of questions, each labelled ``same``
(one answer serves both) or not, and a ``kind``: ``paraphrase``,
``identifier_paraphrase`` (the same order number or amount, said otherwise),
``near_miss`` (other questions in the same words: "enable" and "disable"),
``identifier`` (the same question about another order, one digit apart, or another
amount) and ``unrelated``. The cache would serve one's answer for the other when their
cosine reaches the threshold and they name the same identifiers
(``semantic_cache.identifiers``); precision is the share of those that are ``same``,
recall the share of ``same`` pairs served.

    python -m pactmesh_reasoning.cache_eval            # figures at every threshold
    python -m pactmesh_reasoning.cache_eval --threshold 0.89
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from pactmesh_reasoning.embeddings import DEFAULT_EMBEDDINGS, load_embeddings
from pactmesh_reasoning.semantic_cache import DEFAULT_THRESHOLD, identifiers

PAIRS = Path(__file__).with_name("data") / "semantic_cache_pairs.jsonl"
TARGET_PRECISION = 0.99
"""What the default threshold must reach on the labelled pairs."""
STEP = 0.01


@dataclass(frozen=True)
class Pair:
    """Two questions, and whether one answer serves both."""

    a: str
    b: str
    same: bool
    kind: str


@dataclass(frozen=True)
class Scored:
    """A pair with its cosine, and whether it names the same identifiers."""

    pair: Pair
    cosine: float
    same_identifiers: bool


@dataclass(frozen=True)
class Figures:
    """What the cache would do at one threshold."""

    threshold: float
    precision: float
    """Served pairs that are ``same`` (1.0 when nothing is served)."""
    recall: float
    served: int
    wrongly_served: int


def load_pairs(path: Path = PAIRS) -> list[Pair]:
    """The labelled pairs in ``path``."""
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    return [Pair(r["a"], r["b"], bool(r["same"]), r["kind"]) for r in rows]


def score(pairs: Sequence[Pair], embeddings: Embeddings) -> list[Scored]:
    """Each pair's cosine (unit vectors, as the cache compares them)."""
    texts = sorted({text for pair in pairs for text in (pair.a, pair.b)})
    raw = np.asarray(embeddings.embed_documents(texts), dtype=np.float32)
    unit = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    vectors = dict(zip(texts, unit, strict=True))
    return [
        Scored(
            pair,
            float(vectors[pair.a] @ vectors[pair.b]),
            identifiers(pair.a) == identifiers(pair.b),
        )
        for pair in pairs
    ]


def figures(scored: Sequence[Scored], threshold: float) -> Figures:
    """Precision and recall of serving at ``threshold``."""
    served = [s for s in scored if s.cosine >= threshold and s.same_identifiers]
    right = sum(s.pair.same for s in served)
    positives = sum(s.pair.same for s in scored)
    return Figures(
        threshold=threshold,
        precision=right / len(served) if served else 1.0,
        recall=right / positives if positives else 0.0,
        served=len(served),
        wrongly_served=len(served) - right,
    )


def grid() -> list[float]:
    """The thresholds considered: 0.00 to 1.00 in steps of ``STEP``."""
    return [round(n * STEP, 2) for n in range(round(1 / STEP) + 1)]


def lowest_threshold(scored: Sequence[Scored], target: float = TARGET_PRECISION) -> float:
    """The lowest threshold on the grid from which precision never falls under ``target``."""
    lowest = 1.0
    for threshold in reversed(grid()):
        if figures(scored, threshold).precision < target:
            break
        lowest = threshold
    return lowest


def main(argv: Sequence[str] | None = None) -> None:
    """Print precision and recall at every threshold (or one), and the lowest threshold
    reaching the target precision."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embeddings", default=DEFAULT_EMBEDDINGS)
    parser.add_argument("--threshold", type=float, default=None)
    args = parser.parse_args(argv)
    pairs = load_pairs()
    scored = score(pairs, load_embeddings(args.embeddings))
    shown = [args.threshold] if args.threshold is not None else grid()[50:]
    print(f"{len(pairs)} pairs, {sum(p.same for p in pairs)} the same question")
    print(f"{'threshold':>9} {'precision':>9} {'recall':>6} {'served':>6} {'wrongly':>7}")
    for threshold in shown:
        f = figures(scored, threshold)
        print(
            f"{f.threshold:>9.2f} {f.precision:>9.3f} {f.recall:>6.3f} {f.served:>6} "
            f"{f.wrongly_served:>7}"
        )
    lowest = lowest_threshold(scored)
    print(f"lowest threshold with precision >= {TARGET_PRECISION}: {lowest:.2f}", end="")
    print(f" (the default is {DEFAULT_THRESHOLD:.2f})")


if __name__ == "__main__":
    main()
