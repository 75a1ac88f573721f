"""Lexical matching of customer questions against knowledge-base articles.

How a question is scored (each step measured on shared/data/kb-eval, see bench/kb_quality.py):

1. Text goes through ``kb.normalize``: folded, stop words dropped, lightly stemmed.
2. **Fuzzy term expansion.** Each query term also matches the vocabulary terms that
   share enough character n-grams with it (Dice ≥ ``_EXPANSION_MIN_SIMILARITY``), weighted
   by that similarity; per article only the best-matching variant of a query term
   counts.  This does what character n-gram indexing does for morphology and typos, at
   the cost of a vocabulary-sized n-gram index instead of an n-gram posting per article.
3. **BM25F over the article.** Title terms count twice, body and learned phrasings once.
   The inverted index is walked rarest term first; once ``_POSTINGS_BUDGET`` postings
   have been read, the remaining (frequent) terms only score the best
   ``_CANDIDATES`` articles so far.  That bounds a query's cost on a large KB.
4. **Best passage.** The best few articles are re-ranked with a second BM25 over their
   passages (title, body lines and sentences, phrasings): a question usually paraphrases
   one passage, so a passage that holds all its terms beats terms scattered through a
   long article.

The score is a coverage percentage: an article holding every query term (or a close
variant) once, in an article of average length, scores about 100; one holding half of
the query's IDF-weighted terms about 50.  It is comparable across queries, so a config
threshold (``[kb] min_score``) means the same thing for short and long questions.

Plain rapidfuzz ``token_set_ratio`` over title and body is the baseline this replaces:
on the dev set it reaches pooled top-1 0.61 / top-3 0.78, this reaches about 0.75 / 0.89.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from kb.normalize import char_grams, passages, terms

__all__ = ["KbDocument", "Match", "Matcher", "QUERY_MAX_CHARS"]

QUERY_MAX_CHARS = 2_000
"""Longer questions are cut here: the cost of a search is bounded whatever a customer sends."""

# Per-article input caps, so one huge forum post cannot make indexing (or memory) unbounded.
_TITLE_MAX_CHARS = 500
_BODY_MAX_CHARS = 20_000
_PHRASING_MAX_CHARS = 1_000
_MAX_PHRASINGS = 200
_MAX_QUERY_TERMS = 32

_TITLE_WEIGHT = 2.0
_DOC_K1, _DOC_B = 2.0, 0.75
_PASSAGE_K1, _PASSAGE_B = 1.2, 0.75
_PASSAGE_WEIGHT = 0.2
_EXPANSION_MIN_SIMILARITY = 0.45
_MAX_EXPANSIONS = 8
_POSTINGS_BUDGET = 40_000
_CANDIDATES = 500
_RERANK = 30
_EXPANSION_CACHE_SIZE = 4_096


@dataclass(frozen=True, slots=True)
class KbDocument:
    """One KB article as the matcher sees it.

    ``body`` is the first post as plain text (plus the accepted answer, if any);
    ``phrasings`` are customer questions that this article answered in solved cases.
    """

    id: str
    title: str
    body: str
    url: str = ""
    lang: str | None = None
    phrasings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("KbDocument.id must be a non-empty string")


@dataclass(frozen=True, slots=True)
class Match:
    """A suggested article: ``score`` is 0..100, higher is better."""

    id: str
    score: float


@dataclass(slots=True)
class _Entry:
    """What the index keeps per article, so that removing it costs O(article)."""

    tf: dict[str, float]
    length: float
    passages: tuple[tuple[str, ...], ...]


@dataclass(slots=True)
class _QueryTerm:
    """One query term with the vocabulary terms it matches: ``(term, similarity)``."""

    variants: tuple[tuple[str, float], ...]
    weight: float = 0.0
    cost: int = 0
    scores: dict[str, float] = field(default_factory=dict)


class Matcher:
    """An incremental in-memory index of KB articles; ``search`` returns the best matches.

    Not thread-safe: the owner serialises ``upsert``/``remove``/``search`` (the service
    calls it from one event loop).
    """

    def __init__(self, documents: Iterable[KbDocument] = ()) -> None:
        self._entries: dict[str, _Entry] = {}
        self._postings: dict[str, dict[str, float]] = {}
        self._total_length = 0.0
        self._passage_df: Counter[str] = Counter()
        self._passage_count = 0
        self._passage_total_length = 0
        self._grams: dict[str, set[str]] = {}
        self._expansions: dict[str, tuple[tuple[str, float], ...]] = {}
        for doc in documents:
            self.upsert(doc)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._entries

    # -- maintenance -------------------------------------------------------------------

    def upsert(self, doc: KbDocument) -> None:
        """Add or replace one article. Costs O(size of the article), not O(index)."""
        self.remove(doc.id)
        title = terms(doc.title[:_TITLE_MAX_CHARS])
        body_passages = [terms(p) for p in passages(doc.body[:_BODY_MAX_CHARS])]
        phrasings = [terms(p[:_PHRASING_MAX_CHARS]) for p in doc.phrasings[:_MAX_PHRASINGS]]
        tf: dict[str, float] = {}
        for term in title:
            tf[term] = tf.get(term, 0.0) + _TITLE_WEIGHT
        for passage in (*body_passages, *phrasings):
            for term in passage:
                tf[term] = tf.get(term, 0.0) + 1.0
        kept = tuple(tuple(p) for p in (title, *body_passages, *phrasings) if p)
        entry = _Entry(tf=tf, length=float(sum(tf.values())), passages=kept)
        self._entries[doc.id] = entry
        self._total_length += entry.length
        for term, count in tf.items():
            postings = self._postings.get(term)
            if postings is None:
                postings = self._postings[term] = {}
                self._add_to_vocabulary(term)
            postings[doc.id] = count
        for passage in kept:
            self._passage_df.update(set(passage))
            self._passage_total_length += len(passage)
        self._passage_count += len(kept)

    def remove(self, doc_id: str) -> None:
        """Forget one article; unknown ids are ignored (webhooks may repeat a delete)."""
        entry = self._entries.pop(doc_id, None)
        if entry is None:
            return
        self._total_length -= entry.length
        for term in entry.tf:
            postings = self._postings[term]
            del postings[doc_id]
            if not postings:
                del self._postings[term]
                self._remove_from_vocabulary(term)
        for passage in entry.passages:
            self._passage_df.subtract(set(passage))
            self._passage_total_length -= len(passage)
            for term in set(passage):
                if self._passage_df[term] <= 0:
                    del self._passage_df[term]
        self._passage_count -= len(entry.passages)
        if not self._entries:
            self._total_length = 0.0  # no float drift survives an empty index

    def _add_to_vocabulary(self, term: str) -> None:
        for gram in char_grams(term):
            self._grams.setdefault(gram, set()).add(term)
        self._expansions.clear()  # a new term may be a variant of a cached query term

    def _remove_from_vocabulary(self, term: str) -> None:
        for gram in char_grams(term):
            holders = self._grams.get(gram)
            if holders is not None:
                holders.discard(term)
                if not holders:
                    del self._grams[gram]
        self._expansions.clear()

    # -- search ------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 3) -> list[Match]:
        """The best ``limit`` articles for ``query``, best first, ties broken by id."""
        if limit <= 0 or not self._entries:
            return []
        query_terms = self._query_terms(query[:QUERY_MAX_CHARS])
        if not query_terms:
            return []
        doc_scores = self._score_documents(query_terms)
        if not doc_scores:
            return []
        ideal = sum(qt.weight for qt in query_terms)
        best = heapq.nsmallest(max(_RERANK, limit), doc_scores.items(), key=lambda kv: (-kv[1], kv[0]))
        passage_ideal = self._passage_ideal(query_terms)
        ranked = []
        for doc_id, score in best:
            raw = score / ideal + _PASSAGE_WEIGHT * self._best_passage(doc_id, query_terms) / passage_ideal
            ranked.append((-raw, doc_id))
        ranked.sort()
        top = 1.0 + _PASSAGE_WEIGHT
        return [Match(id=doc_id, score=round(100.0 * min(1.0, -neg / top), 2)) for neg, doc_id in ranked[:limit]]

    def _query_terms(self, query: str) -> list[_QueryTerm]:
        n = len(self._entries)
        found: list[_QueryTerm] = []
        for term in sorted(set(terms(query))):
            variants = self._variants(term)
            if not variants:
                continue
            qt = _QueryTerm(variants=variants)
            qt.weight = max(sim * _idf(n, len(self._postings[v])) for v, sim in variants)
            qt.cost = sum(len(self._postings[v]) for v, _ in variants)
            found.append(qt)
        # Rarest (most informative) first; a hostile 2,000-character query keeps only the
        # _MAX_QUERY_TERMS most informative terms.
        found.sort(key=lambda qt: (-qt.weight, qt.variants[0][0]))
        return found[:_MAX_QUERY_TERMS]

    def _variants(self, term: str) -> tuple[tuple[str, float], ...]:
        cached = self._expansions.get(term)
        if cached is not None:
            return cached
        grams = char_grams(term)
        shared: Counter[str] = Counter()
        for gram in grams:
            shared.update(self._grams.get(gram, ()))
        scored = []
        for other, common in shared.items():
            similarity = 2.0 * common / (len(grams) + len(char_grams(other)))
            if similarity >= _EXPANSION_MIN_SIMILARITY:
                scored.append((-similarity, other))
        scored.sort()
        variants = tuple((other, -neg) for neg, other in scored[:_MAX_EXPANSIONS])
        if len(self._expansions) >= _EXPANSION_CACHE_SIZE:
            self._expansions.clear()
        self._expansions[term] = variants
        return variants

    def _score_documents(self, query_terms: list[_QueryTerm]) -> dict[str, float]:
        n = len(self._entries)
        avg = self._total_length / n
        lengths = self._entries
        k_base, k_len = _DOC_K1 * (1.0 - _DOC_B), _DOC_K1 * _DOC_B / avg
        accumulated: dict[str, float] = {}
        spent = 0
        deferred: list[_QueryTerm] = []
        for qt in query_terms:
            if spent and spent + qt.cost > _POSTINGS_BUDGET:
                deferred.append(qt)
                continue
            spent += qt.cost
            best: dict[str, float] = {}
            for variant, sim in qt.variants:
                postings = self._postings[variant]
                weight = sim * _idf(n, len(postings)) * (_DOC_K1 + 1.0)
                for doc_id, tf in postings.items():
                    value = weight * tf / (tf + k_base + k_len * lengths[doc_id].length)
                    if value > best.get(doc_id, 0.0):
                        best[doc_id] = value
            for doc_id, value in best.items():
                accumulated[doc_id] = accumulated.get(doc_id, 0.0) + value
        if deferred:
            # Frequent terms only refine the articles the informative terms already found.
            candidates = heapq.nsmallest(_CANDIDATES, accumulated.items(), key=lambda kv: (-kv[1], kv[0]))
            accumulated = dict(candidates)
            for qt in deferred:
                plans = [
                    (self._postings[v], sim * _idf(n, len(self._postings[v])) * (_DOC_K1 + 1.0))
                    for v, sim in qt.variants
                ]
                for doc_id in accumulated:
                    length_norm = k_base + k_len * lengths[doc_id].length
                    top = 0.0
                    for postings, weight in plans:
                        tf = postings.get(doc_id)
                        if tf:
                            top = max(top, weight * tf / (tf + length_norm))
                    accumulated[doc_id] += top
        return accumulated

    def _passage_ideal(self, query_terms: list[_QueryTerm]) -> float:
        count = self._passage_count
        return sum(max(sim * _idf(count, self._passage_df[v]) for v, sim in qt.variants) for qt in query_terms)

    def _best_passage(self, doc_id: str, query_terms: list[_QueryTerm]) -> float:
        count = self._passage_count
        avg = self._passage_total_length / count
        k_base, k_len = _PASSAGE_K1 * (1.0 - _PASSAGE_B), _PASSAGE_K1 * _PASSAGE_B / avg
        best = 0.0
        for passage in self._entries[doc_id].passages:
            counts = Counter(passage)
            length_norm = k_base + k_len * len(passage)
            score = 0.0
            for qt in query_terms:
                top = 0.0
                for variant, sim in qt.variants:
                    tf = counts.get(variant)
                    if tf:
                        value = sim * _idf(count, self._passage_df[variant]) * tf * (_PASSAGE_K1 + 1.0) / (tf + length_norm)
                        top = max(top, value)
                score += top
            best = max(best, score)
        return best


def _idf(n: int, df: int) -> float:
    """BM25's IDF, never negative."""
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))
