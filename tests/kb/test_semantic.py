"""SemanticIndex: content-addressed passage vectors, readiness, and the similarity mix."""

from __future__ import annotations

import numpy as np

from posventa.kb.matcher import KbDocument, Matcher
from posventa.kb.semantic import SemanticIndex, passage_key


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def encode_fake(text: str) -> np.ndarray:
    """A stand-in encoder for index bookkeeping tests: 3 dimensions by keyword."""
    return unit(1.0 if "card" in text else 0.01, 1.0 if "pin" in text else 0.01, 1.0 if "rain" in text else 0.01)


def fill(index: SemanticIndex) -> int:
    return index.install((key, encode_fake(text)) for key, text in index.pending())


def test_identical_passages_are_encoded_once_and_freed_with_their_last_article() -> None:
    index = SemanticIndex(model_id="m", dim=3)
    index.set_article("a", ["lost card", "call us"])
    index.set_article("b", ["call us", "pin blocked"])
    assert sorted(text for _, text in index.pending()) == ["call us", "lost card", "pin blocked"]
    assert fill(index) == 3 and len(index) == 3
    index.set_article("c", ["call us"])  # already known: nothing to encode
    assert index.pending() == [] and index.is_ready("c")
    index.remove("a")
    index.remove("c")
    assert len(index) == 2  # "call us" is still b's
    index.remove("b")
    assert len(index) == 0


def test_an_article_ranks_semantically_only_once_all_its_vectors_are_there() -> None:
    index = SemanticIndex(model_id="m", dim=3)
    index.set_article("card", ["lost card", "card stolen"])
    index.set_article("pin", ["pin blocked"])
    (key, text), *_ = index.pending()
    index.install([(key, encode_fake(text))])
    assert index.similarities(unit(1, 0, 0), ["card", "pin"]) is None
    fill(index)
    sims = index.similarities(unit(1, 0, 0), ["card", "pin"])
    assert sims is not None and sims["card"] > 0.9 > 0.1 > sims["pin"]


def test_foreign_vectors_are_refused() -> None:
    index = SemanticIndex(model_id="m", dim=3)
    index.set_article("a", ["x"])
    key = passage_key("m", "x")
    assert index.install([(key, np.array([np.nan, 0, 1])), (key, np.ones(4)), (b"unknown", unit(1, 0, 0))]) == 0
    assert index.pending() == []  # a refused passage is not offered again: encoding loops end
    assert index.install([(key, unit(0, 0, 1))]) == 1 and index.is_ready("a")


def test_a_changed_passage_gets_a_new_key() -> None:
    assert passage_key("m", "a") != passage_key("m", "b") != passage_key("other", "a")
    assert len(passage_key("m", "\ud800")) == 32  # lone surrogates from a hostile post still hash


def test_matcher_uses_meaning_to_rerank_its_lexical_candidates() -> None:
    # Lexically the same for the query "help bank": only meaning tells them apart.
    docs = [KbDocument(id="card", title="Help", body="bank card lost"),
            KbDocument(id="pin", title="Help", body="bank pin blocked")]
    semantic = SemanticIndex(model_id="m", dim=3)
    matcher = Matcher(docs, semantic=semantic)
    before = matcher.search("help bank", limit=2, query_vector=unit(0, 1, 0))  # not encoded yet: lexical
    assert [m.id for m in before] == ["card", "pin"]  # a tie, broken by id
    fill(semantic)
    assert [m.id for m in matcher.search("help bank", limit=2)] == ["card", "pin"]  # no query vector
    towards_pin = matcher.search("help bank", limit=2, query_vector=unit(0, 1, 0))
    assert [m.id for m in towards_pin] == ["pin", "card"]
    assert [m.id for m in matcher.search("help bank", limit=2, query_vector=unit(1, 0, 0))] == ["card", "pin"]
    assert all(0 <= m.score <= 100 for m in towards_pin) and towards_pin[0].score > towards_pin[1].score
    matcher.remove("card")
    assert [m.id for m in matcher.search("help bank", limit=2, query_vector=unit(1, 0, 0))] == ["pin"]
