"""Full-text search over cases: the one place that knows how each engine's index is asked.

The indexes themselves (migration i21_fulltext) cover the case's title and description,
every message and internal note, and the contact's name, email, phone and channel
addresses. Matching is accent- and case-insensitive and by word prefix ("renov" finds
"renovación"), with no stemming: a case may be written in es, pt or en.

A word that matches more texts than ``CANDIDATES`` ranks among its most recent ones: an
agent looks for a case that is alive, and the cost stays bounded. A search yields, per
case, its best hit (``score``, higher is better on both engines, and
where it matched); the page's snippets are asked for afterwards, for those rows only,
because building a snippet reads the matched text back and a common word can match
thousands of messages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Float, Integer, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Subquery

from core.errors import ValidationError

MAX_QUERY_CHARS = 200
#: More words than this only narrows further; the bound keeps a query's cost bounded.
MAX_WORDS = 8
MAX_WORD_CHARS = 60
#: Highlight markers the engines put around each matched word (Unicode private use, so
#: they do not clash with anything a customer is likely to write). Never shown.
START, STOP = "\ue000", "\ue001"
SNIPPET_WORDS = 16
#: Per word and per kind of text, only the most recent this many matching texts are
#: ranked: a word in half the messages would otherwise cost a rank and a join for each.
#: Both engines walk their index newest first and stop there (FTS5 by rowid, PostgreSQL
#: by the primary key or a bitmap of the GIN index, whichever it estimates cheaper).
CANDIDATES = 1000

# Words as the indexes see them: letters and digits (any script); everything else,
# including "_", separates words in both tokenizers.
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class SearchQuery:
    words: tuple[str, ...]
    #: The case number, when the whole query is one ("123" or "#123").
    number: int | None

    # For snippets: any of the words (a case may hold each in a different text). Each word
    # is a quoted prefix term; the words hold no quote (see _WORD).
    @property
    def all_fts5(self) -> str:
        return " ".join(f'"{w}"*' for w in self.words)

    @property
    def all_tsquery(self) -> str:
        return " & ".join(f"'{w}':*" for w in self.words)

    @property
    def any_fts5(self) -> str:
        return " OR ".join(f'"{w}"*' for w in self.words)

    @property
    def any_tsquery(self) -> str:
        return " | ".join(f"'{w}':*" for w in self.words)


@dataclass(frozen=True, slots=True)
class Match:
    """Where a case matched: ``source`` is number, case (title/description), message, note,
    contact or address; ``highlights`` are [start, end) offsets into ``snippet``."""

    source: str
    snippet: str
    highlights: tuple[tuple[int, int], ...]

    def as_dict(self) -> dict:
        return {"source": self.source, "snippet": self.snippet, "highlights": [list(h) for h in self.highlights]}


def parse_query(raw: str) -> SearchQuery | None:
    """The words to look for, or None when there are none (nothing can match)."""
    if len(raw) > MAX_QUERY_CHARS:
        raise ValidationError(f"q is longer than {MAX_QUERY_CHARS} characters", field="q")
    if "\x00" in raw:
        raise ValidationError("q contains a NUL character", field="q")
    # Compatibility forms folded first ("ﬁ" is "fi", "¹" is "1"), as the engines' tokenizers
    # would otherwise split or drop them differently from this regex.
    folded = unicodedata.normalize("NFKC", raw).lower()
    words = tuple(dict.fromkeys(w[:MAX_WORD_CHARS] for w in _WORD.findall(folded)))[:MAX_WORDS]
    stripped = raw.strip().removeprefix("#")
    number = int(stripped) if stripped.isascii() and stripped.isdigit() and len(stripped) <= 18 else None
    if not words and number is None:
        return None
    return SearchQuery(words=words, number=number)


_HIT_COLUMNS = {"case_id": Integer, "score": Float, "source": String, "source_id": Integer}

# One word's hits, one row per matching text: title and description weigh more than a
# message, which weighs more than a contact field. {i} is the word's index.
_SQLITE_WORD = """
  SELECT {w} AS w, m.case_id AS case_id, f.score AS score,
         CASE m.author WHEN 'note' THEN 'note' ELSE 'message' END AS source, m.id AS source_id
    FROM (SELECT rowid AS id, -bm25(messages_fts) AS score FROM messages_fts WHERE messages_fts MATCH :w{i}
           ORDER BY rowid DESC LIMIT {cap}) f
    JOIN messages m ON m.id = f.id WHERE m.case_id IS NOT NULL
  UNION ALL
  SELECT {w}, id, score * 2, 'case', id FROM (
    SELECT rowid AS id, -bm25(cases_fts, 4.0, 2.0) AS score FROM cases_fts WHERE cases_fts MATCH :w{i}
     ORDER BY rowid DESC LIMIT {cap})
  UNION ALL
  SELECT {w}, c.id, f.score, 'contact', f.id
    FROM (SELECT rowid AS id, -bm25(contacts_fts) AS score FROM contacts_fts WHERE contacts_fts MATCH :w{i}
           ORDER BY rowid DESC LIMIT {cap}) f JOIN cases c ON c.contact_id = f.id
  UNION ALL
  SELECT {w}, c.id, f.score, 'address', ci.id
    FROM (SELECT rowid AS id, -bm25(identities_fts) AS score FROM identities_fts WHERE identities_fts MATCH :w{i}
           ORDER BY rowid DESC LIMIT {cap}) f
    JOIN contact_identities ci ON ci.id = f.id JOIN cases c ON c.contact_id = ci.contact_id"""
_PG_WORD = """
  SELECT {w} AS w, case_id, score, source, source_id FROM (
    SELECT m.case_id AS case_id, ts_rank(m.search_vector, q.q{i}) AS score,
           CASE m.author WHEN 'note' THEN 'note' ELSE 'message' END AS source, m.id AS source_id
      FROM messages m, q WHERE m.search_vector @@ q.q{i} AND m.case_id IS NOT NULL
     ORDER BY m.id DESC LIMIT {cap}) mw
  UNION ALL
  SELECT {w}, id, score * 2, 'case', id FROM (
    SELECT c.id, ts_rank(c.search_vector, q.q{i}) AS score FROM cases c, q WHERE c.search_vector @@ q.q{i}
     ORDER BY c.id DESC LIMIT {cap}) cw
  UNION ALL
  SELECT {w}, c.id, ctw.score, 'contact', ctw.id FROM (
    SELECT ct.id, ts_rank(ct.search_vector, q.q{i}) AS score FROM contacts ct, q WHERE ct.search_vector @@ q.q{i}
     ORDER BY ct.id DESC LIMIT {cap}) ctw JOIN cases c ON c.contact_id = ctw.id
  UNION ALL
  SELECT {w}, c.id, ciw.score, 'address', ciw.id FROM (
    SELECT ci.id, ci.contact_id, ts_rank(ci.search_vector, q.q{i}) AS score FROM contact_identities ci, q
     WHERE ci.search_vector @@ q.q{i} ORDER BY ci.id DESC LIMIT {cap}) ciw JOIN cases c ON c.contact_id = ciw.contact_id"""
# An exact case number outranks any text match (its only word is the number: index 0).
_NUMBER_HIT = "SELECT 0 AS w, id AS case_id, 1e9 AS score, 'number' AS source, id AS source_id FROM cases WHERE id = :number"


def hits(query: SearchQuery, dialect: str) -> Subquery:
    """One row per case holding every word: case_id, score (higher is better: the sum over
    its matching texts), and the best-scoring text as source and source_id.

    A case qualifies when one of its texts holds every word (the usual search: "garantía
    impresora", an address), or when each word is in some text of it (a name in the
    contact, a word in a reply). Each word's candidates are capped (``CANDIDATES``), so
    the second way alone would miss a rare word beside common ones."""
    template = _SQLITE_WORD if dialect == "sqlite" else _PG_WORD
    n = len(query.words)
    # w: the word's index, or -1 for texts holding all the words.
    groups = [(i, str(i)) for i in range(n)] + ([(-1, "all")] if n > 1 else [])
    parts = [template.format(w=w, i=name, cap=CANDIDATES) for w, name in groups]
    params: dict[str, object] = {}
    if query.number is not None:
        parts.append(_NUMBER_HIT)
        params["number"] = query.number
    per_word = "\n  UNION ALL ".join(parts)
    if dialect == "sqlite":
        params.update({f"w{i}": f'"{w}"*' for i, w in enumerate(query.words)})
        if n > 1:
            params["wall"] = query.all_fts5
        # With exactly one max() SQLite takes the bare columns from that row.
        sql = (f"SELECT case_id, sum(score) AS score, max(score) AS best, source, source_id FROM ({per_word}) "
               f"GROUP BY case_id HAVING max(w = -1) = 1 OR count(DISTINCT CASE WHEN w >= 0 THEN w END) = {max(1, n)}")
    else:
        params.update({f"t{i}": f"'{w}':*" for i, w in enumerate(query.words)})
        tsqueries = [f"to_tsquery('posventa_search', :t{i}) AS q{i}" for i in range(n)]
        if n > 1:
            params["tall"] = query.all_tsquery
            tsqueries.append("to_tsquery('posventa_search', :tall) AS qall")
        sql = (f"WITH q AS (SELECT {', '.join(tsqueries) or 'NULL'}), per_word AS ({per_word}) "
               "SELECT DISTINCT ON (case_id) case_id, sum(score) OVER (PARTITION BY case_id) AS score, "
               "source, source_id FROM per_word WHERE case_id IN "
               f"(SELECT case_id FROM per_word GROUP BY case_id HAVING bool_or(w = -1) "
               f"OR count(DISTINCT w) FILTER (WHERE w >= 0) = {max(1, n)}) "
               "ORDER BY case_id, per_word.score DESC")
    return text(sql).bindparams(**params).columns(**{k: t() for k, t in _HIT_COLUMNS.items()}).subquery("hits")


# source -> (SQLite: FTS table, PostgreSQL: table and the text to headline)
_SNIPPET_SOURCES = {
    "message": ("messages_fts", "messages", "text"),
    "note": ("messages_fts", "messages", "text"),
    "case": ("cases_fts", "cases", "title || ' — ' || description"),
    "contact": ("contacts_fts", "contacts", "concat_ws(' ', name, email, phone)"),
    "address": ("identities_fts", "contact_identities", "address"),
}


async def snippets(conn: AsyncConnection, query: SearchQuery,
                   found: Iterable[tuple[int, str, int]]) -> dict[int, Match]:
    """Each case's snippet, from (case_id, source, source_id) triples of a page of hits."""
    by_source: dict[str, dict[int, list[int]]] = {}
    result: dict[int, Match] = {}
    for case_id, source, source_id in found:
        if source == "number":
            result[case_id] = Match("number", f"#{case_id}", ((0, len(str(case_id)) + 1),))
        elif source in _SNIPPET_SOURCES:
            by_source.setdefault(source, {}).setdefault(source_id, []).append(case_id)
    for source, ids in by_source.items():
        fts, table, expression = _SNIPPET_SOURCES[source]
        if conn.dialect.name == "sqlite":
            stmt = text(f"SELECT rowid, snippet({fts}, -1, :start, :stop, '…', {SNIPPET_WORDS}) FROM {fts} "
                        f"WHERE {fts} MATCH :fts AND rowid IN :ids").bindparams(
                bindparam("ids", expanding=True), fts=query.any_fts5, start=START, stop=STOP, ids=list(ids))
        else:
            options = f"StartSel={START}, StopSel={STOP}, MaxWords={SNIPPET_WORDS}, MinWords=5, MaxFragments=1, " \
                      "FragmentDelimiter=…"
            stmt = text(f"SELECT id, ts_headline('posventa_search', {expression}, to_tsquery('posventa_search', :tsq), "
                        f":options) FROM {table} WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True), tsq=query.any_tsquery, options=options, ids=list(ids))
        for source_id, marked in await conn.execute(stmt):
            match = unmark(source, marked or "")
            for case_id in ids.get(source_id, ()):
                result[case_id] = match
    return result


def unmark(source: str, marked: str) -> Match:
    """The engine's snippet without its markers, and where they were."""
    plain: list[str] = []
    highlights: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for part in re.split(f"([{START}{STOP}])", marked):
        if part == START:
            start = length
        elif part == STOP:
            if start is not None and length > start:
                highlights.append((start, length))
            start = None
        else:
            plain.append(part)
            length += len(part)
    return Match(source, "".join(plain), tuple(highlights))
