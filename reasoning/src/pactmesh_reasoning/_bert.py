"""A BERT encoder forward pass in numpy float32, for sentence-embedding checkpoints.

Written by hand because the only maintained runtime for these weights is torch (via
sentence-transformers), the multi-gigabyte dependency the kit must not pull in, and
onnxruntime would need an ONNX export that the weights package does not ship. A BERT
encoder is a handful of matrix products; numpy runs them on the same BLAS torch uses on
a CPU, and the result matches torch to float32 rounding (see the kit's reference test).

Only what sentence-transformers' ``Transformer`` module does at inference is here:
absolute position embeddings, post-LayerNorm encoder layers, exact (erf) GELU, no
dropout. Anything else in ``config.json`` is refused rather than silently mis-computed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file

from pactmesh_reasoning.errors import ReasoningError

Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

_F32 = np.float32
# Eigen's float32 rational approximation of erf on [-4, 4] (erf(±4) is ±1 in float32).
# Max abs error 4e-7 against math.erf; 11x faster than np.frompyfunc(math.erf), which
# would cost ~2 s per 256 sentences: the GELU sees 1536 values per token per layer.
_ERF_P = tuple(
    _F32(c)
    for c in (
        -2.72614225801306e-10,
        2.77068142495902e-08,
        -2.10102402082508e-06,
        -5.69250639462346e-05,
        -7.34990630326855e-04,
        -2.95459980854025e-03,
        -1.60960333262415e-02,
    )
)
_ERF_Q = tuple(
    _F32(c)
    for c in (
        -1.45660718464996e-05,
        -2.13374055278905e-04,
        -1.68282697438203e-03,
        -7.37332916720468e-03,
        -1.42647390514189e-02,
    )
)


class UnsupportedModel(ReasoningError):
    """The checkpoint's configuration asks for something this encoder does not do."""

    code = "unsupported_embedding_model"


@dataclass(frozen=True)
class BertConfig:
    """The sizes of a BERT checkpoint, read from its ``config.json``."""

    hidden_size: int
    num_heads: int
    num_layers: int
    intermediate_size: int
    layer_norm_eps: float
    max_positions: int

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        """Read ``config.json``; refuses variants this encoder would compute wrongly."""
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        for key, wanted in (("hidden_act", "gelu"), ("position_embedding_type", "absolute")):
            if raw.get(key, wanted) != wanted:
                raise UnsupportedModel(f"{path}: {key}={raw[key]!r}, only {wanted!r} is supported")
        config = cls(
            hidden_size=int(raw["hidden_size"]),
            num_heads=int(raw["num_attention_heads"]),
            num_layers=int(raw["num_hidden_layers"]),
            intermediate_size=int(raw["intermediate_size"]),
            layer_norm_eps=float(raw["layer_norm_eps"]),
            max_positions=int(raw["max_position_embeddings"]),
        )
        if config.hidden_size % config.num_heads:
            raise UnsupportedModel(f"{path}: hidden_size is not a multiple of the head count")
        return config


@dataclass(frozen=True)
class _Layer:
    """One encoder layer's weights, transposed once so every product is ``x @ w``."""

    qkv: Array  # query, key and value fused: (hidden, 3 * hidden)
    qkv_bias: Array
    out: Array
    out_bias: Array
    attn_norm: tuple[Array, Array]
    up: Array
    up_bias: Array
    down: Array
    down_bias: Array
    ffn_norm: tuple[Array, Array]


def _erf(x: Array) -> Array:
    x = np.clip(x, _F32(-4.0), _F32(4.0))
    x2 = x * x
    p = np.full_like(x, _ERF_P[0])
    for c in _ERF_P[1:]:
        p = p * x2 + c
    q = np.full_like(x, _ERF_Q[0])
    for c in _ERF_Q[1:]:
        q = q * x2 + c
    return x * p / q


def gelu(x: Array) -> Array:
    """BERT's exact GELU, ``x * Φ(x)``, not the tanh approximation."""
    return x * _F32(0.5) * (_F32(1.0) + _erf(x * _F32(1 / np.sqrt(2.0))))


def _layer_norm(x: Array, norm: tuple[Array, Array], eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    scale, shift = norm
    normed: Array = centred / np.sqrt(var + _F32(eps)) * scale + shift
    return normed


def _softmax(x: Array) -> Array:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    probs: Array = e / e.sum(axis=-1, keepdims=True)
    return probs


class _Checkpoint:
    """A ``BertModel`` state dict read as float32, dense weights transposed for ``x @ w``."""

    def __init__(self, tensors: dict[str, npt.NDArray[Any]]) -> None:
        self._tensors = tensors

    def tensor(self, name: str) -> Array:
        return np.ascontiguousarray(self._tensors[name], dtype=_F32)

    def dense(self, prefix: str) -> tuple[Array, Array]:
        weight = np.ascontiguousarray(self.tensor(f"{prefix}.weight").T)
        return weight, self.tensor(f"{prefix}.bias")

    def norm(self, prefix: str) -> tuple[Array, Array]:
        return self.tensor(f"{prefix}.weight"), self.tensor(f"{prefix}.bias")

    def layer(self, index: int) -> _Layer:
        prefix = f"encoder.layer.{index}"
        attention = f"{prefix}.attention"
        parts = [self.dense(f"{attention}.self.{name}") for name in ("query", "key", "value")]
        out, out_bias = self.dense(f"{attention}.output.dense")
        up, up_bias = self.dense(f"{prefix}.intermediate.dense")
        down, down_bias = self.dense(f"{prefix}.output.dense")
        return _Layer(
            qkv=np.ascontiguousarray(np.concatenate([p[0] for p in parts], axis=1)),
            qkv_bias=np.concatenate([p[1] for p in parts]),
            out=out,
            out_bias=out_bias,
            attn_norm=self.norm(f"{attention}.output.LayerNorm"),
            up=up,
            up_bias=up_bias,
            down=down,
            down_bias=down_bias,
            ffn_norm=self.norm(f"{prefix}.output.LayerNorm"),
        )


class BertEncoder:
    """Token ids in, mean-pooled, L2-normalised sentence vectors out."""

    def __init__(self, config: BertConfig, tensors: dict[str, npt.NDArray[Any]]) -> None:
        self.config = config
        checkpoint = _Checkpoint(tensors)
        self._words = checkpoint.tensor("embeddings.word_embeddings.weight")
        self._positions = checkpoint.tensor("embeddings.position_embeddings.weight")
        self._types = checkpoint.tensor("embeddings.token_type_embeddings.weight")
        self._embed_norm = checkpoint.norm("embeddings.LayerNorm")
        self._layers = [checkpoint.layer(i) for i in range(config.num_layers)]

    @classmethod
    def from_files(cls, *, config: Path, weights: Path) -> BertEncoder:
        """Load ``config.json`` and a ``model.safetensors`` holding a ``BertModel``."""
        return cls(BertConfig.from_file(config), load_file(str(weights)))

    def encode(self, ids: IntArray, type_ids: IntArray, mask: IntArray) -> Array:
        """Sentence vectors for one padded batch; arrays are (batch, tokens)."""
        length = ids.shape[1]
        if length > self.config.max_positions:
            raise ValueError(f"{length} tokens exceed {self.config.max_positions} positions")
        x = self._words[ids] + self._positions[:length] + self._types[type_ids]
        x = _layer_norm(x, self._embed_norm, self.config.layer_norm_eps)
        # Additive mask as in transformers: padded keys get the most negative float32,
        # so their softmax weight is exactly zero (finite, so no inf - inf = nan).
        keep = mask.astype(_F32)
        bias = ((_F32(1.0) - keep) * np.finfo(_F32).min)[:, None, None, :]
        for layer in self._layers:
            x = self._layer(x, bias, layer)
        pooled = (x * keep[..., None]).sum(axis=1) / np.maximum(
            keep.sum(axis=1, keepdims=True), _F32(1e-9)
        )
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors: Array = (pooled / np.maximum(norms, _F32(1e-12))).astype(_F32, copy=False)
        return vectors

    def _layer(self, x: Array, bias: Array, w: _Layer) -> Array:
        batch, length, hidden = x.shape
        heads = self.config.num_heads
        eps = self.config.layer_norm_eps
        flat = x.reshape(batch * length, hidden)  # 2-D products: one GEMM, not a loop
        qkv = (flat @ w.qkv + w.qkv_bias).reshape(batch, length, 3, heads, hidden // heads)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (batch, heads, tokens, head_size)
        scores = (q @ k.transpose(0, 1, 3, 2)) * _F32(1 / np.sqrt(hidden // heads)) + bias
        context = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
        flat = _layer_norm(context @ w.out + w.out_bias + flat, w.attn_norm, eps)
        up = gelu(flat @ w.up + w.up_bias)
        flat = _layer_norm(up @ w.down + w.down_bias + flat, w.ffn_norm, eps)
        out: Array = flat.reshape(batch, length, hidden)
        return out
