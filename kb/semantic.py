"""The semantic half of the matcher: passage vectors per article, and their similarity to a query.

An article is represented by the vectors of its passages (body lines and sentences, and
the learned phrasings; the same split the lexical rerank uses).  Its similarity to a
query mixes the best passage (a question usually paraphrases one sentence) and the
normalised mean of all passages (what the article is about as a whole).  Both come from
one gather and one matrix-vector product over the few lexical candidates.

Vectors are content-addressed: a passage's key is a digest of the model and its text,
so identical passages (templates, signatures, re-synced unchanged articles) are encoded
once, and the keys can be persisted (``kb_vectors``) so a restart encodes nothing.

Encoding is slow next to indexing (milliseconds per passage), so ``set_article`` never
encodes: it records what is missing, and the owner encodes ``pending()`` texts whenever it
likes (in a worker thread, in the background) and hands them back with ``install``.  An
article whose vectors are not all there yet has no similarity; the matcher then ranks
lexically until they arrive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["SemanticIndex", "passage_key"]

MAX_PASSAGES_PER_ARTICLE = 64
"""Passages beyond this are not encoded: a huge forum post costs a bounded amount."""

_BEST_PASSAGE_SHARE = 0.5


def passage_key(model_id: str, text: str) -> bytes:
    """The content address of one passage's vector under one model (32 bytes)."""
    return hashlib.sha256(f"{model_id}\0{text}".encode("utf-8", "surrogatepass")).digest()


class SemanticIndex:
    """Passage vectors shared by content, and per article the rows that hold its passages.

    Not thread-safe, like ``Matcher``: only ``pending``'s texts leave the owner's thread.
    """

    def __init__(self, *, model_id: str, dim: int) -> None:
        self.model_id = model_id
        self.dim = dim
        self._vectors = np.zeros((1024, dim), dtype=np.float32)
        self._row_of: dict[bytes, int] = {}
        self._refs: list[int] = []
        self._free: list[int] = []
        self._keys_of: dict[str, tuple[bytes, ...]] = {}
        self._text_of: dict[bytes, str] = {}  # only for keys still missing a vector
        self._waiting: dict[bytes, set[str]] = {}  # missing key -> the articles that want it
        self._missing: dict[str, int] = {}  # article -> how many of its vectors are missing
        self._refused: set[bytes] = set()  # vectors refused by install: never offered again
        self._ready: dict[str, tuple[np.ndarray, float]] = {}  # article -> (rows, |sum of its vectors|)

    def __len__(self) -> int:
        return len(self._row_of)

    # -- articles --------------------------------------------------------------------------

    def set_article(self, doc_id: str, passages: Sequence[str]) -> None:
        """(Re)describe an article by its passages; vectors already known are reused."""
        self.remove(doc_id)
        texts = list(dict.fromkeys(p for p in passages if p.strip()))[:MAX_PASSAGES_PER_ARTICLE]
        keys = tuple(passage_key(self.model_id, t) for t in texts)
        self._keys_of[doc_id] = keys
        missing = 0
        for key, text in zip(keys, texts, strict=True):
            row = self._row_of.get(key)
            if row is not None:
                self._refs[row] += 1
            else:
                self._text_of[key] = text
                self._waiting.setdefault(key, set()).add(doc_id)
                missing += 1
        if missing:
            self._missing[doc_id] = missing
        else:
            self._mark_ready(doc_id)

    def remove(self, doc_id: str) -> None:
        keys = self._keys_of.pop(doc_id, None)
        if keys is None:
            return
        self._ready.pop(doc_id, None)
        self._missing.pop(doc_id, None)
        for key in keys:
            row = self._row_of.get(key)
            if row is None:
                wanting = self._waiting.get(key)
                if wanting is not None:
                    wanting.discard(doc_id)
                    if not wanting:
                        del self._waiting[key]
                        self._text_of.pop(key, None)
                        self._refused.discard(key)
                continue
            self._refs[row] -= 1
            if self._refs[row] <= 0:
                del self._row_of[key]
                self._free.append(row)

    def is_ready(self, doc_id: str) -> bool:
        return doc_id in self._ready

    # -- vectors ---------------------------------------------------------------------------

    def pending(self, limit: int | None = None) -> list[tuple[bytes, str]]:
        """Passages that some article needs and that have no vector yet: ``(key, text)``."""
        items = [(key, text) for key, text in self._text_of.items() if key not in self._refused]
        return items if limit is None else items[:limit]

    def install(self, vectors: Iterable[tuple[bytes, np.ndarray]]) -> int:
        """Hand over vectors (from ``encode`` or from storage); returns how many were new."""
        added = 0
        for key, vector in vectors:
            if key in self._row_of or key not in self._waiting:
                continue  # already known, or no article wants it any more
            vector = np.asarray(vector, dtype=np.float32).reshape(-1)
            if vector.shape[0] != self.dim or not np.all(np.isfinite(vector)):
                # Its articles stay lexical; offering the passage again would loop for ever.
                self._refused.add(key)
                continue
            row = self._allocate()
            self._vectors[row] = vector
            self._row_of[key] = row
            wanting = self._waiting.pop(key)
            self._refs[row] = len(wanting)
            self._text_of.pop(key, None)
            added += 1
            for doc_id in wanting:
                left = self._missing[doc_id] - 1
                if left:
                    self._missing[doc_id] = left
                else:
                    del self._missing[doc_id]
                    self._mark_ready(doc_id)
        return added

    def vector(self, key: bytes) -> np.ndarray | None:
        row = self._row_of.get(key)
        return None if row is None else self._vectors[row].copy()

    def _allocate(self) -> int:
        if self._free:
            return self._free.pop()
        row = len(self._refs)
        if row >= self._vectors.shape[0]:
            grown = np.zeros((self._vectors.shape[0] * 2, self.dim), dtype=np.float32)
            grown[: self._vectors.shape[0]] = self._vectors
            self._vectors = grown
        self._refs.append(0)
        return row

    def _mark_ready(self, doc_id: str) -> None:
        keys = self._keys_of[doc_id]
        rows = np.fromiter((self._row_of[k] for k in keys), dtype=np.intp, count=len(keys))
        total = float(np.linalg.norm(self._vectors[rows].sum(axis=0)))
        self._ready[doc_id] = (rows, max(total, 1e-12))

    # -- search ----------------------------------------------------------------------------

    def similarities(self, query: np.ndarray, doc_ids: Sequence[str]) -> dict[str, float] | None:
        """Cosine-based similarity (-1..1) of each article to a unit query vector.

        ``None`` when any of them has no vectors yet: mixing articles that have a
        semantic score with ones that don't would rank by which finished encoding first.
        """
        if not doc_ids or any(d not in self._ready for d in doc_ids):
            return None
        out = dict.fromkeys(doc_ids, 0.0)  # an article with no text to encode stays at 0
        entries = [(d, *self._ready[d]) for d in doc_ids if len(self._ready[d][0])]
        if not entries:
            return out
        rows = np.concatenate([rows for _, rows, _ in entries])
        # einsum's own loop, not BLAS: a few hundred rows are too few for OpenBLAS's threads,
        # which would then spin on the core the next query's encoding needs (+1.2 ms p95).
        dots = np.einsum("ij,j->i", self._vectors[rows], query)
        starts = np.cumsum([0] + [len(rows) for _, rows, _ in entries[:-1]])
        best = np.maximum.reduceat(dots, starts)
        sums = np.add.reduceat(dots, starts)
        for i, (doc_id, _, total) in enumerate(entries):
            mean_cos = float(sums[i]) / total  # cos(query, normalised mean of the passage vectors)
            out[doc_id] = _BEST_PASSAGE_SHARE * float(best[i]) + (1.0 - _BEST_PASSAGE_SHARE) * mean_cos
        return out
