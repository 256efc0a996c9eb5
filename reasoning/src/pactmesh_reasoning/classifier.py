"""Nearest-example classification with sentence embeddings.

A few labelled example sentences per label are embedded once (all-MiniLM-L6-v2, offline,
by default); a text gets the label of the examples it is closest to by cosine. This is
what the offline model uses to pick an option (a workflow, a category), and it is usable
on its own wherever a handful of examples is all the training data there is.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings

from pactmesh_reasoning.embeddings import load_embeddings
from pactmesh_reasoning.errors import ReasoningError

logger = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]

DEFAULT_TEMPERATURE = 0.05
"""Softmax temperature over the labels' cosines (see ``Classification.confidence``).
MiniLM cosines between related sentences differ by a few hundredths, so a temperature
of that order turns a clear lead into a confident answer and a near tie into ~0.5."""


class NoExamples(ReasoningError):
    """A classifier needs at least one example for each label it may answer."""

    code = "classifier_no_examples"


@dataclass(frozen=True)
class Classification:
    """A text's label and how sure the classifier is."""

    label: str
    confidence: float
    """In [0, 1]: the label's share of a softmax over every label's best cosine (at
    ``temperature``), times the best cosine clipped to [0, 1], so a text far from every
    example gets a low confidence even when one label is marginally nearer. A ranking
    signal, not a calibrated probability."""
    similarity: float
    """Cosine between the text and ``example``."""
    example: str
    """The nearest example of ``label``."""
    scores: dict[str, float]
    """Every candidate label's best cosine."""


class ExampleClassifier:
    """Labels texts by their nearest labelled example (cosine of sentence embeddings).

    Examples are embedded on first use and kept; meant for one event loop, like the
    semantic cache (``aclassify`` embeds in a worker thread).
    """

    def __init__(
        self,
        examples: Mapping[str, Sequence[str]],
        *,
        embeddings: Embeddings | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        empty = [label for label, texts in examples.items() if not texts]
        if not examples or empty:
            raise NoExamples(f"every label needs examples; none for: {empty or 'any label'}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive: {temperature}")
        self._texts = [text for texts in examples.values() for text in texts]
        self._labels = [label for label, texts in examples.items() for _ in texts]
        self._embeddings = embeddings
        self.temperature = temperature
        self._matrix: Vector | None = None

    @property
    def labels(self) -> list[str]:
        """Every label, in the order the examples gave them."""
        return list(dict.fromkeys(self._labels))

    def classify(self, text: str, *, among: Collection[str] | None = None) -> Classification:
        """The label of ``text``, chosen among ``among`` (default: every label)."""
        if self._matrix is None:
            self._matrix = _unit(np.asarray(self._model().embed_documents(self._texts)))
        vector = _unit(np.asarray([self._model().embed_query(text)]))[0]
        return self._decide(vector, among)

    async def aclassify(self, text: str, *, among: Collection[str] | None = None) -> Classification:
        """``classify`` with the embedding done off the event loop."""
        if self._matrix is None:
            rows = await self._model().aembed_documents(self._texts)
            self._matrix = _unit(np.asarray(rows))
        vector = _unit(np.asarray([await self._model().aembed_query(text)]))[0]
        return self._decide(vector, among)

    def _model(self) -> Embeddings:
        if self._embeddings is None:
            self._embeddings = load_embeddings()
        return self._embeddings

    def _decide(self, vector: Vector, among: Collection[str] | None) -> Classification:
        assert self._matrix is not None  # embedded by the caller
        candidates = self.labels if among is None else [lb for lb in self.labels if lb in among]
        if not candidates:
            raise NoExamples(f"no examples for any of {sorted(among or ())}")
        cosines = self._matrix @ vector
        best_row: dict[str, int] = {}
        for row, label in enumerate(self._labels):
            if label in candidates and (
                label not in best_row or cosines[row] > cosines[best_row[label]]
            ):
                best_row[label] = row
        scores = {label: float(cosines[row]) for label, row in best_row.items()}
        label = max(scores, key=lambda lb: scores[lb])
        similarity = scores[label]
        logits = (np.array(list(scores.values())) - similarity) / self.temperature
        share = 1.0 / float(np.exp(logits).sum())  # softmax of the best label, stably
        return Classification(
            label=label,
            confidence=round(share * min(max(similarity, 0.0), 1.0), 4),
            similarity=similarity,
            example=self._texts[best_row[label]],
            scores=scores,
        )


def _unit(rows: npt.NDArray[np.floating]) -> Vector:
    rows = rows.astype(np.float32)
    norms = np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    unit: Vector = (rows / norms).astype(np.float32)
    return unit
