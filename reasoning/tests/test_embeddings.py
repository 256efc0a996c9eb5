"""all-MiniLM-L6-v2 on numpy, against vectors that sentence-transformers on torch produced.

The reference file (tests/data) holds 21 sentences and their 384-dimensional vectors
from ``SentenceTransformer(...).encode(..., normalize_embeddings=True)``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from pactmesh_reasoning import embeddings as embeddings_module
from pactmesh_reasoning.embeddings import (
    EmbeddingsUnavailable,
    MiniLMEmbeddings,
    load_embeddings,
)

REFERENCE = Path(__file__).parent / "data" / "minilm-l6-v2-reference.json"


def _cosines(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cos: npt.NDArray[np.float64] = (x * y).sum(-1) / (
        np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1)
    )
    return cos


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def model() -> MiniLMEmbeddings:
    loaded = load_embeddings()
    assert isinstance(loaded, MiniLMEmbeddings)
    return loaded


def test_every_sentence_matches_the_torch_reference(
    model: MiniLMEmbeddings, reference: dict[str, Any]
) -> None:
    sentences = reference["sentences"]
    assert sentences == [s for group in reference["groups"] for s in group]
    cosines = _cosines(model.embed_documents(sentences), reference["embeddings"])
    assert len(cosines) == 21
    assert cosines.min() >= 0.9999, f"worst sentence: {sentences[int(cosines.argmin())]!r}"


def test_vectors_are_unit_length_with_384_dimensions(
    model: MiniLMEmbeddings, reference: dict[str, Any]
) -> None:
    vectors = np.asarray(model.embed_documents(reference["sentences"]))
    assert vectors.shape == (21, 384)
    assert model.dimension == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embed_query_equals_embed_documents_for_one_text(model: MiniLMEmbeddings) -> None:
    text = "Where is my order?"
    assert model.embed_query(text) == model.embed_documents([text])[0]


def test_padding_in_a_batch_does_not_change_a_vector(
    model: MiniLMEmbeddings, reference: dict[str, Any]
) -> None:
    long = "Please tell me, in as much detail as you can, " * 8 + "where my order is."
    texts = [*reference["sentences"], long]
    batched = model.embed_documents(texts)  # one batch: every short text is padded
    alone = [model.embed_query(text) for text in texts]
    assert _cosines(batched, alone).min() > 0.99999


def test_batches_keep_the_order_of_the_texts(model: MiniLMEmbeddings) -> None:
    texts = [f"question number {'very ' * (i % 7)}{i}" for i in range(70)]
    small_batches = MiniLMEmbeddings(batch_size=8)
    assert _cosines(small_batches.embed_documents(texts), model.embed_documents(texts)).min() > (
        0.99999
    )


def test_text_beyond_max_seq_length_is_truncated(model: MiniLMEmbeddings) -> None:
    long = "shipment delayed at the port " * 200  # about 1000 tokens, 256 are read
    a, b = model.embed_documents([long, long + "but the weather is lovely today"])
    assert model.max_seq_length == 256
    assert _cosines(a, b) > 0.99999


def test_no_texts_give_no_vectors(model: MiniLMEmbeddings) -> None:
    assert model.embed_documents([]) == []


async def test_async_variants_match_and_leave_the_event_loop_free(
    model: MiniLMEmbeddings,
) -> None:
    texts = [f"Where is order {n}? It was due on day {n % 28 + 1}." for n in range(256)]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        vectors = await model.aembed_documents(texts)
    finally:
        task.cancel()
    assert ticks >= 5, "the event loop was blocked while embedding"
    assert _cosines(vectors, model.embed_documents(texts)).min() > 0.99999
    assert await model.aembed_query(texts[0]) == model.embed_query(texts[0])


def test_loading_needs_no_network_and_no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("the model tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert len(MiniLMEmbeddings().embed_query("offline")) == 384
    for heavy in ("torch", "sentence_transformers"):
        assert importlib.util.find_spec(heavy) is None, f"{heavy} is installed"


def test_the_local_model_is_loaded_once() -> None:
    assert load_embeddings() is load_embeddings("local:all-minilm-l6-v2")


@pytest.mark.parametrize("spec", ["local:all-minilm-l12-v2", "all-minilm-l6-v2", ":x", "local:"])
def test_unknown_or_malformed_specs_are_refused(spec: str) -> None:
    with pytest.raises(EmbeddingsUnavailable) as caught:
        load_embeddings(spec)
    assert caught.value.code == "embeddings_unavailable"


def test_other_providers_are_built_by_langchain(monkeypatch: pytest.MonkeyPatch) -> None:
    import langchain.embeddings

    built: list[str] = []
    fake = DeterministicFakeEmbedding(size=8)

    def init_embeddings(model: str, **_kwargs: Any) -> Embeddings:
        built.append(model)
        return fake

    monkeypatch.setattr(langchain.embeddings, "init_embeddings", init_embeddings)
    assert load_embeddings("openai:text-embedding-3-small") is fake
    assert built == ["openai:text-embedding-3-small"]


def test_an_unknown_provider_gets_langchains_error() -> None:
    assert embeddings_module.DEFAULT_EMBEDDINGS == "local:all-minilm-l6-v2"
    with pytest.raises(ValueError, match="not supported"):
        load_embeddings("nosuchprovider:some-model")
