"""Lexical matching of customer questions against knowledge-base articles.

How a question is scored (each step measured on tests/data/kb-eval, see bench/kb_quality.py):

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
5. **Meaning.** With a ``SemanticIndex`` (``kb.semantic``) and the query's sentence vector
   (``kb.embedding``), those same candidates are re-ranked by lexical score plus
   ``SEMANTIC_WEIGHT`` × their similarity to the query, which catches paraphrases that
   share no word ("my card is gone" → "Lost or stolen card").  The lexical steps still
   choose the candidates, so the vectors cost one small product per query whatever
   the size of the KB.

The score is a coverage percentage: an article holding every query term (or a close
variant) once, in an article of average length, scores about 100; one holding half of
the query's IDF-weighted terms about 50.  It is comparable across queries, so a config
threshold (``[kb] min_score``) means the same thing for short and long questions.

Plain rapidfuzz ``token_set_ratio`` over title and body is the baseline this replaces:
on the dev set it reaches pooled top-1 0.61 / top-3 0.78; the lexical steps alone reach
about 0.75 / 0.90 and with step 5 about 0.80 / 0.92.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from posventa.kb.normalize import char_grams, passages, terms
from posventa.kb.semantic import SemanticIndex

__all__ = ["KbDocument", "Match", "Matcher", "QUERY_MAX_CHARS", "SEMANTIC_WEIGHT"]

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
_POSTINGS_BUDGET = 10_000
_CANDIDATES = 1_000
_RERANK = 30
_RENORMALISE_DRIFT = 0.1
_EXPANSION_CACHE_SIZE = 4_096

SEMANTIC_WEIGHT = 1.0
"""How much the query/article similarity (-1..1) counts next to the lexical score (0..~1.2)."""


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

    def __init__(self, documents: Iterable[KbDocument] = (), *, semantic: SemanticIndex | None = None) -> None:
        #: Passage vectors for step 5; ``None`` ranks lexically only.
        self.semantic = semantic
        self._entries: dict[str, _Entry] = {}
        self._postings: dict[str, dict[str, float]] = {}
        self._total_length = 0.0
        # Postings hold BM25's saturated term frequency tf / (tf + k1·(1 - b + b·len/avg)),
        # computed against ``_norm_length`` rather than the live average, so a query does
        # one multiplication per posting.  The stored values are recomputed only when the
        # live average drifts by more than _RENORMALISE_DRIFT; that needs a sizeable share
        # of the index to change, so its cost is amortised O(article) per upsert.
        self._norm_length = 0.0
        self._passage_df: Counter[str] = Counter()
        self._passage_count = 0
        self._passage_total_length = 0
        self._grams: dict[str, set[str]] = {}
        self._gram_counts: dict[str, int] = {}
        self._expansions: dict[str, tuple[tuple[str, float], ...]] = {}
        for doc in documents:
            self.upsert(doc)
        if self._entries and self._norm_length != self._total_length / len(self._entries):
            # A bulk load ends exact, so its results do not depend on the input order.
            self._renormalise(self._total_length / len(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._entries

    # -- maintenance -------------------------------------------------------------------

    def upsert(self, doc: KbDocument) -> None:
        """Add or replace one article. Costs O(size of the article), not O(index)."""
        self.remove(doc.id)
        title = terms(doc.title[:_TITLE_MAX_CHARS])
        body_texts = list(passages(doc.body[:_BODY_MAX_CHARS]))
        phrasing_texts = [p[:_PHRASING_MAX_CHARS] for p in doc.phrasings[:_MAX_PHRASINGS]]
        body_passages = [terms(p) for p in body_texts]
        phrasings = [terms(p) for p in phrasing_texts]
        if self.semantic is not None:
            # The title is left out: on kb-eval it made the vectors no better, and the
            # lexical score already weighs it double.  An article of only a title uses it.
            self.semantic.set_article(doc.id, phrasing_texts + body_texts or [doc.title[:_TITLE_MAX_CHARS]])
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
        average = self._total_length / len(self._entries)
        if not self._norm_length or abs(average - self._norm_length) > _RENORMALISE_DRIFT * self._norm_length:
            self._renormalise(average)  # includes this article's postings, at the new average
        else:
            self._add_postings(doc.id, entry)
        for passage in kept:
            self._passage_df.update(set(passage))
            self._passage_total_length += len(passage)
        self._passage_count += len(kept)

    def remove(self, doc_id: str) -> None:
        """Forget one article; unknown ids are ignored (webhooks may repeat a delete)."""
        entry = self._entries.pop(doc_id, None)
        if entry is None:
            return
        if self.semantic is not None:
            self.semantic.remove(doc_id)
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
            self._norm_length = 0.0

    def _add_postings(self, doc_id: str, entry: _Entry) -> None:
        length_norm = _DOC_K1 * (1.0 - _DOC_B + _DOC_B * entry.length / self._norm_length)
        for term, count in entry.tf.items():
            postings = self._postings.get(term)
            if postings is None:
                postings = self._postings[term] = {}
                self._add_to_vocabulary(term)
            postings[doc_id] = count / (count + length_norm)

    def _renormalise(self, average: float) -> None:
        self._norm_length = average
        for doc_id, entry in self._entries.items():
            self._add_postings(doc_id, entry)

    def _add_to_vocabulary(self, term: str) -> None:
        grams = char_grams(term)
        self._gram_counts[term] = len(grams)
        for gram in grams:
            self._grams.setdefault(gram, set()).add(term)
        self._expansions.clear()  # a new term may be a variant of a cached query term

    def _remove_from_vocabulary(self, term: str) -> None:
        del self._gram_counts[term]
        for gram in char_grams(term):
            holders = self._grams.get(gram)
            if holders is not None:
                holders.discard(term)
                if not holders:
                    del self._grams[gram]
        self._expansions.clear()

    # -- search ------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 3, query_vector: np.ndarray | None = None) -> list[Match]:
        """The best ``limit`` articles for ``query``, best first, ties broken by id.

        ``query_vector`` is the query's unit sentence vector from the encoder behind
        ``semantic``; without it (or before the candidates' vectors are ready) the ranking
        is lexical.
        """
        if limit <= 0 or not self._entries:
            return []
        query_terms = self._query_terms(query[:QUERY_MAX_CHARS])
        if not query_terms:
            return []
        doc_scores = self._score_documents(query_terms)
        if not doc_scores:
            return []
        ideal = sum(qt.weight for qt in query_terms)
        best = _top(doc_scores, max(_RERANK, limit))
        wanted, passage_ideal = self._passage_weights(query_terms)
        top = 1.0 + _PASSAGE_WEIGHT
        lexical = {
            doc_id: (score / ideal + _PASSAGE_WEIGHT * self._best_passage(doc_id, wanted) / passage_ideal) / top
            for doc_id, score in best
        }
        similarity = None
        if self.semantic is not None and query_vector is not None:
            similarity = self.semantic.similarities(query_vector, list(lexical))
        if similarity is None:
            ranked = sorted((-value, doc_id) for doc_id, value in lexical.items())
        else:
            # Same 0..1 scale as the lexical score: an exact, on-topic match still reads ~100.
            scale = 1.0 + SEMANTIC_WEIGHT
            ranked = sorted((-(value + SEMANTIC_WEIGHT * similarity[doc_id]) / scale, doc_id)
                            for doc_id, value in lexical.items())
        return [Match(id=doc_id, score=round(100.0 * max(0.0, min(1.0, -neg)), 2)) for neg, doc_id in ranked[:limit]]

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
        size, sizes = len(grams), self._gram_counts
        for other, common in shared.items():
            similarity = 2.0 * common / (size + sizes[other])
            if similarity >= _EXPANSION_MIN_SIMILARITY:
                scored.append((-similarity, other))
        scored.sort()
        variants = tuple((other, -neg) for neg, other in scored[:_MAX_EXPANSIONS])
        if len(self._expansions) >= _EXPANSION_CACHE_SIZE:
            self._expansions.clear()
        self._expansions[term] = variants
        return variants

    def _score_documents(self, query_terms: list[_QueryTerm]) -> dict[str, float]:
        """BM25F of every article that shares a term (or a variant of one) with the query.

        Each (query term, variant) pair is a posting list to walk.  Pairs are walked most
        informative first until ``_POSTINGS_BUDGET`` postings have been read; the rest
        (frequent words, weak variants) only refine the ``_CANDIDATES`` best articles so
        far, by direct lookups.  On a small KB the budget is never reached and the result
        is exact; on a large one a query costs O(budget + candidates × terms).
        """
        n = len(self._entries)
        pairs = []
        for index, qt in enumerate(query_terms):
            for variant, sim in qt.variants:
                postings = self._postings[variant]
                weight = sim * _idf(n, len(postings)) * (_DOC_K1 + 1.0)
                pairs.append((-weight, index, variant, postings))
        pairs.sort(key=lambda p: (p[0], p[1], p[2]))
        best: list[dict[str, float]] = [{} for _ in query_terms]
        deferred = []
        spent = 0
        for neg_weight, index, _, postings in pairs:
            weight = -neg_weight
            if spent and spent + len(postings) > _POSTINGS_BUDGET:
                deferred.append((weight, index, postings))
                continue
            spent += len(postings)
            term_best = best[index]
            if not term_best:  # the term's strongest variant: nothing to compare with yet
                best[index] = {doc_id: weight * sat for doc_id, sat in postings.items()}
                continue
            get = term_best.get
            for doc_id, sat in postings.items():
                value = weight * sat
                if value > get(doc_id, 0.0):
                    term_best[doc_id] = value
        totals: dict[str, float] = {}
        for term_best in best:
            for doc_id, value in term_best.items():
                totals[doc_id] = totals.get(doc_id, 0.0) + value
        if not deferred or not totals:
            return totals
        # Frequent words and weak variants only refine the articles found so far.
        refined = {}
        for doc_id, score in _top(totals, _CANDIDATES):
            extra: dict[int, float] = {}
            for weight, index, postings in deferred:
                sat = postings.get(doc_id)
                if sat:
                    value = weight * sat
                    if value > best[index].get(doc_id, 0.0) and value > extra.get(index, 0.0):
                        extra[index] = value
            for index, value in extra.items():
                score += value - best[index].get(doc_id, 0.0)
            refined[doc_id] = score
        return refined

    def _passage_weights(self, query_terms: list[_QueryTerm]) -> tuple[dict[str, list[tuple[int, float]]], float]:
        """Per vocabulary variant: which query terms it stands for, with its passage-BM25 weight."""
        count = self._passage_count
        wanted: dict[str, list[tuple[int, float]]] = {}
        ideal = 0.0
        for index, qt in enumerate(query_terms):
            best = 0.0
            for variant, sim in qt.variants:
                weight = sim * _idf(count, self._passage_df[variant])
                best = max(best, weight)
                wanted.setdefault(variant, []).append((index, weight * (_PASSAGE_K1 + 1.0)))
            ideal += best
        return wanted, ideal

    def _best_passage(self, doc_id: str, wanted: dict[str, list[tuple[int, float]]]) -> float:
        avg = self._passage_total_length / self._passage_count
        k_base, k_len = _PASSAGE_K1 * (1.0 - _PASSAGE_B), _PASSAGE_K1 * _PASSAGE_B / avg
        best = 0.0
        for passage in self._entries[doc_id].passages:
            hits: dict[str, int] = {}
            for term in passage:
                if term in wanted:
                    hits[term] = hits.get(term, 0) + 1
            if not hits:
                continue
            length_norm = k_base + k_len * len(passage)
            per_term: dict[int, float] = {}
            for term, tf in hits.items():
                saturation = tf / (tf + length_norm)
                for index, weight in wanted[term]:
                    value = weight * saturation
                    if value > per_term.get(index, 0.0):
                        per_term[index] = value
            best = max(best, sum(per_term.values()))
        return best


def _top(scores: dict[str, float], k: int) -> list[tuple[str, float]]:
    """The ``k`` best ``(id, score)`` pairs, higher score first, ties broken by ascending id.

    Every article tied with the k-th score is considered, so the cut never depends on
    dict order.
    """
    if len(scores) > k:
        kth = heapq.nlargest(k, scores.values())[-1]
        items = [(doc_id, score) for doc_id, score in scores.items() if score >= kth]
    else:
        items = list(scores.items())
    items.sort(key=lambda item: (-item[1], item[0]))
    return items[:k]


def _idf(n: int, df: int) -> float:
    """BM25's IDF, never negative."""
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))
