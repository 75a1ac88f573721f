"""The KB search as one object: the lexical ``Matcher``, its ``SemanticIndex`` and the encoder.

``KbIndex`` (the service's ``AnswerSuggester``) owns one and keeps encoding off the event
loop; the benchmarks and tests call it directly, so they measure what ``serve`` runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from posventa.kb.embedding import SentenceEncoder
from posventa.kb.matcher import QUERY_MAX_CHARS, KbDocument, Match, Matcher
from posventa.kb.semantic import SemanticIndex

__all__ = ["KbSearch"]

QUERY_MAX_TOKENS = 24
"""Word pieces of a query the encoder reads (passages get the model's 128).  Encoding costs
~2.4 ms plus ~0.12 ms a word piece, and long questions are the ones the lexical steps
already match well: on kb-eval dev, cutting queries at 24 changes top-3 by under 0.001."""

ENCODE_BATCH = 256
"""Passages encoded per step of a background pass: small enough to keep steps short."""


class KbSearch:
    """Lexical recall plus semantic rerank. Without an encoder it is the lexical matcher."""

    def __init__(self, documents: Iterable[KbDocument] = (), *, encoder: SentenceEncoder | None = None) -> None:
        """Index ``documents`` (CPU work, no encoding: see ``encode_step``)."""
        self.encoder = encoder
        self.query_max_tokens = QUERY_MAX_TOKENS
        semantic = SemanticIndex(model_id=encoder.model_id, dim=encoder.dim) if encoder is not None else None
        self.matcher = Matcher(documents, semantic=semantic)

    @staticmethod
    def default_encoder() -> SentenceEncoder:
        """The bundled sentence model (``EncoderUnavailable`` when it is not installed)."""
        return SentenceEncoder.bundled()

    @classmethod
    def build(cls, documents: Iterable[KbDocument], *, encoder: SentenceEncoder | None = None) -> KbSearch:
        """An index over ``documents`` with every passage encoded (blocking: for tools and tests)."""
        search = cls(documents, encoder=encoder)
        while search.encode_step():
            pass
        return search

    @property
    def semantic(self) -> SemanticIndex | None:
        return self.matcher.semantic

    def __len__(self) -> int:
        return len(self.matcher)

    def upsert(self, doc: KbDocument) -> None:
        self.matcher.upsert(doc)

    def remove(self, doc_id: str) -> None:
        self.matcher.remove(doc_id)

    def encode_step(self, limit: int = ENCODE_BATCH) -> int:
        """Encode up to ``limit`` passages that still lack a vector; returns how many."""
        semantic = self.matcher.semantic
        if semantic is None or self.encoder is None:
            return 0
        pending = semantic.pending(limit)
        if not pending:
            return 0
        vectors = self.encoder.encode([text for _, text in pending])
        semantic.install(zip((key for key, _ in pending), vectors, strict=True))
        return len(pending)

    def query_vector(self, text: str) -> np.ndarray | None:
        if self.encoder is None:
            return None
        return self.encoder.encode([text[:QUERY_MAX_CHARS]], max_tokens=self.query_max_tokens)[0]

    def search(self, text: str, *, limit: int = 3, query_vector: np.ndarray | None = None) -> Sequence[Match]:
        """The best matches; the query is encoded here unless its vector is given."""
        if query_vector is None and self.encoder is not None and len(self.matcher):
            query_vector = self.query_vector(text)
        return self.matcher.search(text, limit=limit, query_vector=query_vector)
