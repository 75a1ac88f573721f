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

A case's score sums its matching texts' weights: PostgreSQL's ``ts_rank``, SQLite's fixed
weights per kind of text (see _SQLITE_WORD), since FTS5's ``bm25()`` counts a word's
texts over all of them. On SQLite a common word is read as typed (``ExactTerms``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Float, Integer, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Subquery

from posventa.core.errors import ValidationError

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

    # Each word is a prefix term (on SQLite, see ExactTerms); the words hold no quote (see
    # _WORD). For snippets: any of the words (a case may hold each in a different text).
    @property
    def all_tsquery(self) -> str:
        return " & ".join(f"'{w}':*" for w in self.words)

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

# SQLite, one word's hits (or all the words', in one text), one row per matching text. The
# weights stand for bm25's: a title counts 4 (it also matches the case's text), the title
# or description 2, a message, note, contact or address 1. bm25() itself is not used: it
# counts the texts holding each word over all of them, and a word in half of 1,000,000
# messages costs ~20 ms to count, where its newest 1,000 take 0.3 ms to read. {i} names
# the group's expressions (each table's, see ExactTerms).
_SQLITE_WORD = """
  SELECT {w} AS w, m.case_id AS case_id, 1.0 AS score,
         CASE m.author WHEN 'note' THEN 'note' ELSE 'message' END AS source, m.id AS source_id
    FROM (SELECT rowid AS id FROM messages_fts WHERE messages_fts MATCH :m{i} ORDER BY rowid DESC LIMIT {cap}) f
    JOIN messages m ON m.id = f.id WHERE m.case_id IS NOT NULL
  UNION ALL
  SELECT {w}, id, 2.0, 'case', id FROM (
    SELECT rowid AS id FROM cases_fts WHERE cases_fts MATCH :c{i} ORDER BY rowid DESC LIMIT {cap})
{title}
  UNION ALL
  SELECT {w}, c.id, 1.0, 'contact', f.id
    FROM (SELECT rowid AS id FROM contacts_fts WHERE contacts_fts MATCH :ct{i} ORDER BY rowid DESC LIMIT {cap}) f
    JOIN cases c ON c.contact_id = f.id
  UNION ALL
  SELECT {w}, c.id, 1.0, 'address', ci.id
    FROM (SELECT rowid AS id FROM identities_fts WHERE identities_fts MATCH :ci{i} ORDER BY rowid DESC LIMIT {cap}) f
    JOIN contact_identities ci ON ci.id = f.id JOIN cases c ON c.contact_id = ci.contact_id"""
#: SQLite, per word: the title's weight beyond the case's text (a column filter: FTS5
#: tests each match's columns, so it is left out for all the words together, which are
#: rarer in a title and each weigh their own).
_SQLITE_TITLE = """
  UNION ALL
  SELECT {w}, id, 2.0, 'case', id FROM (
    SELECT rowid AS id FROM cases_fts WHERE cases_fts MATCH :t{i} ORDER BY rowid DESC LIMIT {cap})"""
#: SQLite: each FTS table by the prefix of its expressions' parameters in _SQLITE_WORD
#: (the title's are the cases' under a column filter).
_SQLITE_TABLES = {"m": "messages_fts", "c": "cases_fts", "ct": "contacts_fts", "ci": "identities_fts"}


#: SQLite: a prefix is looked up as the exact terms it covers when it covers at most this
#: many (else as a prefix term, see ExactTerms).
MAX_PREFIX_TERMS = 16


@dataclass(frozen=True, slots=True)
class ExactTerms:
    """SQLite: how each word is looked up in each FTS table. ``pairs``: the (table, word)
    whose exact term alone matches at least ``CANDIDATES`` texts; ``covers``: for the
    others, the indexed terms the word begins (at most ``MAX_PREFIX_TERMS``).

    FTS5 reads an exact term's postings lazily, newest first, and stops at the LIMIT: the
    newest 1,000 of a word in half of 1,000,000 messages cost 0.3 ms. A prefix term
    ("garant"*) is answered by first merging the postings of every term it covers into
    one list (~17 ms for a word in half the messages), again for each use of it in a
    query and for each row a snippet is asked for. So a word is looked up as typed where
    that already yields the newest ``CANDIDATES``; else as the terms it begins ("renov":
    "renovacion" OR "renovamos"), listed once from the table's vocabulary (fts5vocab:
    one seek per term); else, when it begins too many terms or none is listed, as a
    prefix term. The cost of the first
    rule: where a word is common, texts holding only a longer word it begins
    ("garantias") are left out of its newest ``CANDIDATES``."""

    pairs: frozenset[tuple[str, str]]
    covers: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def term(self, table: str, word: str) -> str:
        if (table, word) in self.pairs:
            return f'"{word}"'
        if terms := self.covers.get((table, word)):
            return "(" + " OR ".join(f'"{t}"' for t in terms) + ")"
        return f'"{word}"*'

    def all_terms(self, table: str, words: Iterable[str], op: str) -> str:
        return f" {op} ".join(self.term(table, w) for w in words)

    def lazy(self, table: str, words: Iterable[str]) -> bool:
        """Whether every word is looked up without a prefix term in ``table``."""
        return all((table, w) in self.pairs or self.covers.get((table, w)) for w in words)


def _vocabulary(table: str) -> str:
    return f"temp.{table}_instances"


async def read_exact_terms(conn: AsyncConnection, query: SearchQuery) -> ExactTerms:
    """How to look each word up in each FTS table (SQLite only, see ``ExactTerms``): one
    statement reading at most ``CANDIDATES`` postings per word and table, and for the words
    not common as typed, one reading the vocabulary at their prefix."""
    pairs = [(table, word) for table in _SQLITE_TABLES.values() for word in query.words]
    if not pairs:
        return ExactTerms(frozenset())
    counts = ", ".join(f"(SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH :e{k} LIMIT {CANDIDATES}))"
                       for k, (table, _) in enumerate(pairs))
    row = (await conn.execute(text(f"SELECT {counts}"),
                              {f"e{k}": f'"{word}"' for k, (_, word) in enumerate(pairs)})).one()
    common = frozenset(pair for pair, n in zip(pairs, row, strict=True) if n >= CANDIDATES)
    rare = [pair for pair in pairs if pair not in common]
    if not rare:
        return ExactTerms(common)
    # Each connection's own vocabulary tables (temp: nothing in the schema to migrate),
    # created on its first search, and committed: they last as long as the connection.
    info = (await conn.get_raw_connection()).info
    if not info.get("posventa_fts5vocab"):
        for table in _SQLITE_TABLES.values():
            await conn.execute(text(f"CREATE VIRTUAL TABLE IF NOT EXISTS {_vocabulary(table)} "
                                    f"USING fts5vocab(main, {table}, instance)"))
        await conn.commit()
        info["posventa_fts5vocab"] = True
    # The vocabulary holds the tokenizer's terms: lower case, without diacritics. Its
    # 'instance' form lists each occurrence, term by term, lazily: the first occurrence at
    # or after a string is a seek, so the terms a prefix begins are found one seek each
    # (the next term is at or after this one followed by char(1)). Its 'row' form would
    # count each term's texts, ~15 ms for a word in half the messages.
    params: dict[str, str] = {}
    ctes, parts = [], []
    for k, (table, word) in enumerate(rare):
        folded = _unaccented(word)
        if not folded:
            continue  # only combining marks: left to FTS5 as a prefix term
        params[f"lo{k}"], params[f"hi{k}"] = folded, folded[:-1] + chr(ord(folded[-1]) + 1)
        vocabulary = _vocabulary(table)
        ctes.append(f"hop{k}(n, term) AS (SELECT 0, (SELECT term FROM {vocabulary} WHERE term >= :lo{k} "
                    f"AND term < :hi{k} LIMIT 1) UNION ALL SELECT n + 1, (SELECT term FROM {vocabulary} "
                    f"WHERE term >= hop{k}.term || char(1) AND term < :hi{k} LIMIT 1) FROM hop{k} "
                    f"WHERE hop{k}.term IS NOT NULL AND n < {MAX_PREFIX_TERMS})")
        parts.append(f"SELECT {k} AS k, term FROM hop{k} WHERE term IS NOT NULL")
    covered: dict[tuple[str, str], list[str]] = {}
    if parts:
        sql = f"WITH RECURSIVE {', '.join(ctes)} {' UNION ALL '.join(parts)}"
        for k, term in await conn.execute(text(sql), params):
            covered.setdefault(rare[k], []).append(term)
    return ExactTerms(common, {pair: tuple(terms) for pair, terms in covered.items()
                               if len(terms) <= MAX_PREFIX_TERMS and '"' not in "".join(terms)})


# PostgreSQL: {m}, {c}, {ct} and {ci} are each table's candidates, as _pg_candidates
# writes them for the plan chosen (see TermStats).
_PG_WORD = """
  SELECT {w} AS w, case_id, score, source, source_id FROM ({m}) mw
  UNION ALL
  SELECT {w}, id, score * 2, 'case', id FROM ({c}) cw
  UNION ALL
  SELECT {w}, c.id, ctw.score, 'contact', ctw.id FROM ({ct}) ctw JOIN cases c ON c.contact_id = ctw.id
  UNION ALL
  SELECT {w}, c.id, ciw.score, 'address', ciw.id FROM ({ci}) ciw JOIN cases c ON c.contact_id = ciw.contact_id"""
#: Per table: its alias in _PG_WORD, the columns its candidates carry, and their condition
#: besides the match ({a} is the alias).
_PG_SOURCES = {
    "messages": ("m", "{a}.case_id AS case_id, ts_rank({a}.search_vector, {q}) AS score, "
                      "CASE {a}.author WHEN 'note' THEN 'note' ELSE 'message' END AS source, {a}.id AS source_id",
                 "{a}.case_id IS NOT NULL"),
    "cases": ("c", "{a}.id, ts_rank({a}.search_vector, {q}) AS score", None),
    "contacts": ("ct", "{a}.id, ts_rank({a}.search_vector, {q}) AS score", None),
    "contact_identities": ("ci", "{a}.id, {a}.contact_id, ts_rank({a}.search_vector, {q}) AS score", None),
}
#: A walk reads at most this many times the rows that the statistics say hold the newest
#: CANDIDATES matches; past that, the GIN index answers (the word is rarer than they say
#: among the newest texts).
WALK_MARGIN = 4
#: How long a process plans by the statistics it read (they change with ANALYZE).
TERM_STATS_MAX_AGE_S = 60.0
#: PostgreSQL's DEFAULT_TS_MATCH_SEL (ts_selfuncs.c).
_DEFAULT_MATCH_SHARE = 0.005
#: Each table's plan for one word: None leaves it to the planner (no statistics yet).
WALK, INDEX = "walk", "index"


@dataclass(frozen=True, slots=True)
class TermStats:
    """What PostgreSQL's statistics (ANALYZE) say about each searched table: its rows and
    the fraction of rows holding each common lexeme (``pg_stats.most_common_elems``).

    PostgreSQL's planner cannot estimate a prefix term ('garantia':*): it assumes a fixed
    small fraction for any of them. At 1,000,000 messages that picks the wrong plan both
    ways: a word in half the messages read all 500,000 matches through the GIN index (3 s)
    to keep the newest 1,000, and a word in a hundred of them walked the whole table newest
    first (2 s). These statistics say which it is, and ``plan`` names the plan."""

    rows: dict[str, float]
    common: dict[str, dict[str, float]]
    #: The share assumed for a prefix that matches no common lexeme: as PostgreSQL's own
    #: estimate for a lexeme missing from the list, half the least common one's, at most 0.5 %.
    floor: dict[str, float]

    def share(self, table: str, words: Iterable[str]) -> float | None:
        """The estimated fraction of ``table``'s rows whose text holds every word (as a
        prefix), assuming the words independent; None without statistics."""
        common = self.common.get(table)
        if common is None or table not in self.rows:
            return None
        share = 1.0
        for word in words:
            lexeme = _unaccented(word)
            matched = sum(f for lex, f in common.items() if lex.startswith(lexeme))
            share *= min(1.0, matched) if matched else self.floor.get(table, 0.0)
        return share

    def plan(self, table: str, words: Iterable[str]) -> str | None:
        """WALK (the primary key newest first, testing each row) when the matches are dense
        enough that the newest ``CANDIDATES`` come sooner than reading every match through
        the GIN index would end, else INDEX; None without statistics. Walking reads about
        CANDIDATES / share rows, the index share * rows: they cross at sqrt(CANDIDATES / rows)."""
        share = self.share(table, words)
        if share is None:
            return None
        rows = max(1.0, self.rows[table])
        return WALK if share * rows >= CANDIDATES and share >= (CANDIDATES / rows) ** 0.5 else INDEX


_STATS_SQL = text(
    "SELECT c.relname, c.reltuples, s.most_common_elems::text::text[], s.most_common_elem_freqs "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema() "
    "LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'search_vector' "
    "WHERE c.relname IN ('messages', 'cases', 'contacts', 'contact_identities') AND c.relkind = 'r'")


async def read_term_stats(conn: AsyncConnection) -> TermStats:
    """The statistics ``TermStats`` holds (PostgreSQL only): one small catalog read."""
    rows: dict[str, float] = {}
    common: dict[str, dict[str, float]] = {}
    floor: dict[str, float] = {}
    for relname, reltuples, elems, freqs in await conn.execute(_STATS_SQL):
        if reltuples is None or reltuples < 0:
            continue  # never analyzed
        rows[relname] = float(reltuples)
        if elems and freqs:
            # most_common_elem_freqs: one per element, then the minimum, maximum and null share.
            common[relname] = dict(zip(elems, freqs[:len(elems)], strict=True))
            floor[relname] = min(_DEFAULT_MATCH_SHARE, min(freqs[:len(elems)]) / 2)
        else:
            common[relname] = {}  # analyzed, and no lexeme is common: every word is rare
            floor[relname] = _DEFAULT_MATCH_SHARE
    return TermStats(rows=rows, common=common, floor=floor)


def _unaccented(word: str) -> str:
    # As the posventa_search configuration's unaccent and SQLite's unicode61 fold a word,
    # close enough for where to look: PostgreSQL's plan depends on it, never its result;
    # a word SQLite's vocabulary holds no term at is looked up as a prefix term.
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def _pg_candidates(table: str, q: str, plan: str | None, share: float | None) -> str:
    """One table's candidates for one word (or all the words, ``q`` naming the tsquery):
    the newest CANDIDATES texts that match, with their rank.

    WALK: the newest texts, along the primary key, at most WALK_MARGIN * CANDIDATES / share
    of them; if fewer than CANDIDATES match there, the GIN index instead (the count is a
    one-time filter: PostgreSQL runs only the side it selects). INDEX: the GIN index, then
    the newest. None: the planner's choice."""
    alias, columns, extra = _PG_SOURCES[table]
    cols = columns.format(a=alias, q=f"q.{q}")
    where = f"{alias}.search_vector @@ q.{q}" + (f" AND {extra.format(a=alias)}" if extra else "")
    if plan != WALK:
        order = f"{alias}.id + 0" if plan == INDEX else f"{alias}.id"
        return f"SELECT {cols} FROM {table} {alias}, q WHERE {where} ORDER BY {order} DESC LIMIT {CANDIDATES}"
    scan = max(CANDIDATES, int(WALK_MARGIN * CANDIDATES / max(share or 1.0, 1e-6)))
    # The walk reads the window newest first and stops at the CANDIDATES-th match: the
    # tsquery is an InitPlan, not a join with q, which would lose the window's order and
    # sort every match in it; the rank is computed for those CANDIDATES rows only.
    walk_cols = columns.format(a=alias, q=f"(SELECT {q} FROM q)")
    walk_where = f"{alias}.search_vector @@ (SELECT {q} FROM q)" + (f" AND {extra.format(a=alias)}" if extra else "")
    recent = f"(SELECT * FROM {table} ORDER BY id DESC LIMIT {scan}) {alias}"
    return (f"WITH recent AS MATERIALIZED (SELECT {walk_cols} FROM {recent} WHERE {walk_where} "
            f"ORDER BY {alias}.id DESC LIMIT {CANDIDATES}) "
            f"SELECT * FROM recent WHERE (SELECT count(*) FROM recent) >= {CANDIDATES} "
            f"UNION ALL SELECT * FROM (SELECT {cols} FROM {table} {alias}, q WHERE {where} "
            f"ORDER BY {alias}.id + 0 DESC LIMIT {CANDIDATES}) older "
            f"WHERE (SELECT count(*) FROM recent) < {CANDIDATES}")


def _pg_word(w: int, q: str, words: tuple[str, ...], stats: TermStats | None) -> str:
    parts = {}
    for table, (alias, _, _) in _PG_SOURCES.items():
        plan = stats.plan(table, words) if stats is not None else None
        share = stats.share(table, words) if stats is not None else None
        parts[alias] = _pg_candidates(table, q, plan, share)
    return _PG_WORD.format(w=w, **parts)


# An exact case number outranks any text match (its only word is the number: index 0).
_NUMBER_HIT = "SELECT 0 AS w, id AS case_id, 1e9 AS score, 'number' AS source, id AS source_id FROM cases WHERE id = :number"


def hits(query: SearchQuery, dialect: str, stats: TermStats | ExactTerms | None = None) -> Subquery:
    """One row per case holding every word: case_id, score (higher is better: the sum over
    its matching texts), and the best-scoring text as source and source_id.

    A case qualifies when one of its texts holds every word (the usual search: "garantía
    impresora", an address), or when each word is in some text of it (a name in the
    contact, a word in a reply). Each word's candidates are capped (``CANDIDATES``), so
    the second way alone would miss a rare word beside common ones.

    On PostgreSQL, ``stats`` (``read_term_stats``) chooses each table's plan per word; without
    them the planner chooses. On SQLite, ``stats`` (``read_exact_terms``) says which words
    are looked up as typed; without them every word is a prefix."""
    n = len(query.words)
    # w: the word's index, or -1 for texts holding all the words.
    groups = [(i, str(i), (query.words[i],)) for i in range(n)] + ([(-1, "all", query.words)] if n > 1 else [])
    if dialect == "sqlite":
        parts = [_SQLITE_WORD.format(w=w, i=name, cap=CANDIDATES, title=_SQLITE_TITLE.format(
                     w=w, i=name, cap=CANDIDATES) if w >= 0 else "") for w, name, _ in groups]
        exact = stats if isinstance(stats, ExactTerms) else ExactTerms(frozenset())
    else:
        parts = [_pg_word(w, f"q{name}", words, stats) for w, name, words in groups]
    params: dict[str, object] = {}
    if query.number is not None:
        parts.append(_NUMBER_HIT)
        params["number"] = query.number
    per_word = "\n  UNION ALL ".join(parts)
    if dialect == "sqlite":
        for _, name, words in groups:
            for prefix, table in _SQLITE_TABLES.items():
                params[f"{prefix}{name}"] = exact.all_terms(table, words, "AND")
            if len(words) == 1:
                params[f"t{name}"] = f"title : ({exact.all_terms('cases_fts', words, 'AND')})"
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


async def snippets(conn: AsyncConnection, query: SearchQuery, found: Iterable[tuple[int, str, int]],
                   exact: ExactTerms | None = None) -> dict[int, Match]:
    """Each case's snippet, from (case_id, source, source_id) triples of a page of hits.
    On SQLite, ``exact`` (as for ``hits``) says which words to highlight as typed."""
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
            exact = exact or ExactTerms(frozenset())
            # FTS5 looks each rowid of an IN list up separately: cheap for exact terms, but a
            # prefix term's merged postings would be built again for each. With a prefix,
            # the list is tested outside FTS5 ("+rowid"), over one pass of its rowid range.
            if exact.lazy(fts, query.words):
                within = "rowid IN :ids"
            else:
                within = f"+rowid IN :ids AND rowid BETWEEN {min(ids)} AND {max(ids)}"
            stmt = text(f"SELECT rowid, snippet({fts}, -1, :start, :stop, '…', {SNIPPET_WORDS}) FROM {fts} "
                        f"WHERE {fts} MATCH :fts AND {within}").bindparams(
                bindparam("ids", expanding=True), fts=exact.all_terms(fts, query.words, "OR"), start=START,
                stop=STOP, ids=list(ids))
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
