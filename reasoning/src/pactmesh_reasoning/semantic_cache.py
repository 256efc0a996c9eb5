"""A semantic cache: answers to questions already answered, found by meaning.

A question is embedded and compared (cosine) with the questions whose answers the tenant
has stored; the best match at or above ``threshold`` is a hit, and its answer is served
instead of a model call. Entries live in memory, one bounded matrix per tenant, and are
searched by brute force: a few thousand rows times 384 floats is one matrix-vector
product, well under a millisecond.

Serving an answer computed for someone else is only correct when the answer does not
depend on who asks or on the words cosine similarity cannot tell apart; see
``cacheable``, and ``DEFAULT_THRESHOLD`` for how close a match has to be. Cosine barely
sees identifiers and amounts ("order 4411" and "order 4412" score 0.98), so a stored
answer is only ever served for a question naming exactly the same ones
(``identifiers``), however close the rest.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings

logger = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]

DEFAULT_THRESHOLD = 0.89
"""Cosine at or above which a stored question counts as the same question.

Set from a measured precision of at least 0.99 on the labelled pairs kept in
``pactmesh_reasoning/data/semantic_cache_pairs.jsonl`` (336 pairs: paraphrases of 20
support questions, near misses such as "enable" and "disable two-factor authentication",
requests differing by one digit of an order number or an amount, unrelated questions),
with all-MiniLM-L6-v2 and the identifier rule: 0.89 is the lowest threshold (in steps of
0.01) from which precision never falls under 0.99; there it is 1.00 and recall 0.09
(``python -m pactmesh_reasoning.cache_eval`` prints the figures at every threshold;
``docs/benchmarks.md`` has them). The closest near miss scores 0.889 ("Can I return a
damaged item?" / "Can I exchange a damaged item?"), so a looser threshold serves one
question's answer to another: the cache trades most of its hits for never doing that.
"""
DEFAULT_TTL_S = 3600.0
"""How long a stored answer may be served."""
DEFAULT_MAX_ENTRIES_PER_TENANT = 1000
"""Entries one tenant may hold; the least recently used goes first beyond that."""
_MEMO_SIZE = 256  # question vectors kept so the store after a miss re-uses the lookup's


_TOKEN_WITH_A_DIGIT = re.compile(r"\S*\d\S*")
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_EDGES = "$€£#.,;:!?()[]'\""


def identifiers(text: str) -> str:
    """The identifiers and amounts ``text`` names (every word with a digit in it),
    normalised and sorted: ``"order #4411 for $1,200.00"`` names ``"1200 4411"``. Two
    questions may share an answer only if they name the same ones."""
    found = set()
    for token in _TOKEN_WITH_A_DIGIT.findall(text.lower()):
        token = token.strip(_EDGES)
        if _NUMBER.fullmatch(token):
            token = token.replace(",", "")
            if "." in token:
                token = token.rstrip("0").rstrip(".")
        found.add(token)
    return " ".join(sorted(found))


def cacheable(
    *, workflow: str, personalised: bool, side_effecting: bool, never: Collection[str] = ()
) -> bool:
    """Whether answers of a flow may be stored in, and served from, the semantic cache.

    Only answers that anyone in the tenant asking the same question should get, and
    that did nothing but answer, are reusable:

    * ``personalised`` flows (an order's status, an account's data) would serve one
      user's answer to another, and their questions differ from each other in just the
      identifiers that sentence embeddings barely see;
    * ``side_effecting`` flows (a refund, a purchase order, a reroute) must run every
      time: a cached "done" would skip the action;
    * ``never`` names workflows a deployment opts out of caching altogether.
    """
    return not personalised and not side_effecting and workflow not in never


@dataclass(frozen=True)
class CacheHit:
    """A stored answer served for a new question."""

    answer: dict[str, Any]
    """A copy of the answer stored; changing it does not change the cache."""
    similarity: float
    """Cosine between the new question and ``matched_question``."""
    matched_question: str
    """The question the answer was stored for."""
    age_s: float
    """Seconds since the answer was stored."""


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was created."""

    hits: int
    misses: int
    stores: int
    evictions: int
    """Entries dropped to make room (least recently used first)."""
    expirations: int
    """Entries dropped because their TTL had passed."""

    @property
    def model_calls_saved(self) -> int:
        """Every hit is an answer not computed again."""
        return self.hits


class _Shelf:
    """One tenant's entries: a matrix of unit vectors plus per-row metadata.

    Rows are reused in place; ``live`` says which hold an entry. The matrix starts
    small and doubles up to ``capacity``, so a tenant with few entries costs little.
    """

    def __init__(self, *, capacity: int, dimension: int) -> None:
        self.capacity = capacity
        self.vectors: Vector = np.zeros((min(capacity, 16), dimension), dtype=np.float32)
        rows = len(self.vectors)
        self.live = np.zeros(rows, dtype=bool)
        self.stored_at = np.zeros(rows, dtype=np.float64)
        self.used_at = np.zeros(rows, dtype=np.float64)
        self.questions: list[str] = [""] * rows
        self.answers: list[dict[str, Any]] = [{}] * rows
        self.names: npt.NDArray[np.object_] = np.full(rows, "", dtype=object)
        """Each entry's ``identifiers``."""
        self.slot_of: dict[str, int] = {}

    def expire(self, *, older_than: float) -> int:
        """Drop entries stored at or before ``older_than``; returns how many."""
        dead = np.flatnonzero(self.live & (self.stored_at <= older_than))
        for slot in dead:
            self._free(int(slot))
        return len(dead)

    def best(self, vector: Vector, names: str) -> tuple[int, float] | None:
        """The live row naming ``names`` most similar to ``vector``, with its cosine."""
        candidates = self.live & (self.names == names)
        if not candidates.any():
            return None
        scores = np.where(candidates, self.vectors @ vector, -np.inf)
        slot = int(np.argmax(scores))
        return slot, float(scores[slot])

    def put(self, *, vector: Vector, question: str, answer: dict[str, Any], now: float) -> bool:
        """Store an entry (replacing one for the same question); True if one was evicted."""
        slot = self.slot_of.get(question)
        evicted = False
        if slot is None:
            slot, evicted = self._free_slot()
        self.vectors[slot] = vector
        self.names[slot] = identifiers(question)
        self.live[slot] = True
        self.stored_at[slot] = self.used_at[slot] = now
        self.questions[slot], self.answers[slot] = question, answer
        self.slot_of[question] = slot
        return evicted

    def _free_slot(self) -> tuple[int, bool]:
        free = np.flatnonzero(~self.live)
        if len(free):
            return int(free[0]), False
        if len(self.vectors) < self.capacity:
            return self._grow(), False
        lru = int(np.argmin(self.used_at))  # every row is live here
        self._free(lru)
        return lru, True

    def _grow(self) -> int:
        old = len(self.vectors)
        new = min(old * 2, self.capacity)
        self.vectors = np.concatenate([self.vectors, np.zeros_like(self.vectors[: new - old])])
        self.live = np.concatenate([self.live, np.zeros(new - old, dtype=bool)])
        self.stored_at = np.concatenate([self.stored_at, np.zeros(new - old)])
        self.used_at = np.concatenate([self.used_at, np.zeros(new - old)])
        self.questions += [""] * (new - old)
        self.answers += [{}] * (new - old)
        self.names = np.concatenate([self.names, np.full(new - old, "", dtype=object)])
        return old

    def _free(self, slot: int) -> None:
        self.live[slot] = False
        del self.slot_of[self.questions[slot]]
        self.questions[slot], self.answers[slot] = "", {}


class SemanticCache:
    """Answers by tenant, served again for questions that mean the same.

    Tenants are isolated: a lookup only ever searches its own tenant's entries. Meant
    for one event loop; the embedding runs in a worker thread, the bookkeeping does not.
    """

    def __init__(
        self,
        embeddings: Embeddings,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries_per_tenant: int = DEFAULT_MAX_ENTRIES_PER_TENANT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine, in [-1, 1]: {threshold}")
        if ttl_s <= 0 or max_entries_per_tenant < 1:
            raise ValueError("ttl_s must be positive and max_entries_per_tenant at least 1")
        self._embeddings = embeddings
        self.threshold = threshold
        self.ttl_s = ttl_s
        self.max_entries_per_tenant = max_entries_per_tenant
        self._clock = clock
        self._shelves: dict[str, _Shelf] = {}
        self._memo: OrderedDict[str, Vector] = OrderedDict()
        self._counts = {"hits": 0, "misses": 0, "stores": 0, "evictions": 0, "expirations": 0}

    async def lookup(self, *, tenant: str, question: str) -> CacheHit | None:
        """The stored answer whose question is closest to ``question``, if close enough
        and naming the same identifiers and amounts."""
        vector = await self._embed(question)
        now = self._clock()
        shelf = self._shelves.get(tenant)
        if shelf is not None:
            self._expire(shelf, now)
        found = shelf.best(vector, identifiers(question)) if shelf is not None else None
        if shelf is None or found is None or found[1] < self.threshold:
            self._counts["misses"] += 1
            return None
        slot, similarity = found
        shelf.used_at[slot] = now
        self._counts["hits"] += 1
        logger.debug("semantic cache hit for tenant %s (cosine %.3f)", tenant, similarity)
        return CacheHit(
            answer=copy.deepcopy(shelf.answers[slot]),
            similarity=similarity,
            matched_question=shelf.questions[slot],
            age_s=now - float(shelf.stored_at[slot]),
        )

    async def store(self, *, tenant: str, question: str, answer: dict[str, Any]) -> None:
        """Keep ``answer`` for ``question``; check ``cacheable`` for the flow first."""
        vector = await self._embed(question)
        now = self._clock()
        shelf = self._shelves.get(tenant)
        if shelf is None:
            shelf = _Shelf(capacity=self.max_entries_per_tenant, dimension=len(vector))
            self._shelves[tenant] = shelf
        self._expire(shelf, now)
        evicted = shelf.put(vector=vector, question=question, answer=copy.deepcopy(answer), now=now)
        self._counts["stores"] += 1
        self._counts["evictions"] += evicted

    def purge_expired(self) -> int:
        """Drop every tenant's expired entries (lookups only purge their own tenant's)."""
        now = self._clock()
        dropped = sum(self._expire(shelf, now) for shelf in self._shelves.values())
        self._shelves = {t: s for t, s in self._shelves.items() if s.live.any()}
        return dropped

    def stats(self) -> CacheStats:
        """Counters since the cache was created."""
        return CacheStats(**self._counts)

    def _expire(self, shelf: _Shelf, now: float) -> int:
        """Drop ``shelf``'s entries whose TTL has passed; returns how many."""
        dropped = shelf.expire(older_than=now - self.ttl_s)
        self._counts["expirations"] += dropped
        return dropped

    async def _embed(self, question: str) -> Vector:
        vector = self._memo.get(question)
        if vector is None:
            raw = np.asarray(await self._embeddings.aembed_query(question), dtype=np.float32)
            vector = raw / max(float(np.linalg.norm(raw)), 1e-12)
            self._memo[question] = vector
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        self._memo.move_to_end(question)
        return vector
