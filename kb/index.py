"""The in-memory search index over kb's tables, and the ``AnswerSuggester`` core calls.

The index is a cache of a cache: Discourse → kb_articles (+ kb_phrasings) → Matcher.
Suggestions are computed locally, so we never call Discourse per customer message.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from sqlalchemy import select

from core.domain import Suggestion
from core.persistence import Database
from core.persistence.schema import case_suggestions, cases
from kb.matcher import KbDocument, Matcher
from kb.tables import kb_articles, kb_phrasings


#: Learned phrasings kept per article (the most recent), so history cannot grow an article
#: without bound.
MAX_PHRASINGS = 50
_TOPIC_IN_URL = re.compile(r"/t/(?:[^/]+/)?(\d+)(?:/\d+)?/?$")


async def learned_phrasings(conn) -> dict[str, list[str]]:
    """Customer questions that a KB article answered, so the matcher learns from history:
    explicit phrasings, cases whose customer said "yes, this solved it" to a suggestion,
    and cases an agent linked to a post ("solved with another case")."""
    out: dict[str, list[str]] = {}

    def add(article_id: str, text: str | None) -> None:
        if text and text.strip():
            bucket = out.setdefault(article_id, [])
            if len(bucket) < MAX_PHRASINGS and text not in bucket:
                bucket.append(text[:1000])

    for p in await conn.execute(select(kb_phrasings.c.article_id, kb_phrasings.c.text)
                                .order_by(kb_phrasings.c.id.desc())):
        add(p.article_id, p.text)
    for r in await conn.execute(
            select(case_suggestions.c.article_id, cases.c.description)
            .join(cases, cases.c.id == case_suggestions.c.case_id)
            .where(case_suggestions.c.feedback == "yes").order_by(case_suggestions.c.id.desc())):
        add(r.article_id, r.description)
    for r in await conn.execute(select(cases.c.kb_url, cases.c.description)
                                .where(cases.c.kb_action == "link", cases.c.kb_url.is_not(None))
                                .order_by(cases.c.id.desc())):
        match = _TOPIC_IN_URL.search(r.kb_url.split("?", 1)[0].split("#", 1)[0])
        if match:
            add(f"discourse-{match.group(1)}", r.description)
    return out


def document_from_row(row, phrasings: Sequence[str] = ()) -> KbDocument:
    body = row.body
    if row.accepted_answer:
        body = f"{body}\n\n{row.accepted_answer}"
    return KbDocument(id=row.id, title=row.title, body=body, url=row.url, lang=row.lang, phrasings=tuple(phrasings))


class KbIndex:
    """Implements core's ``AnswerSuggester``. ``load()`` (re)builds from the tables;
    ``upsert``/``remove`` keep it fresh between loads."""

    def __init__(self, *, db: Database) -> None:
        self._db = db
        self._matcher = Matcher()
        self._titles: dict[str, tuple[str, str]] = {}
        self._learned: dict[str, tuple[str, ...]] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._matcher)

    async def load(self) -> int:
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(select(kb_articles).where(kb_articles.c.deleted.is_(False)))).all()
            extra = await learned_phrasings(conn)
        self._learned = {k: tuple(v) for k, v in extra.items()}
        docs = [document_from_row(r, extra.get(r.id, ())) for r in rows]
        # Building the index is CPU work; keep the event loop responsive meanwhile.
        matcher = await asyncio.to_thread(Matcher, docs)
        async with self._lock:
            self._matcher = matcher
            self._titles = {r.id: (r.title, r.url) for r in rows}
        return len(docs)

    async def refresh_learned(self) -> int:
        """Re-read what solved cases taught us and update only the articles that changed."""
        async with self._db.engine.connect() as conn:
            extra = await learned_phrasings(conn)
            stale = [a for a, texts in extra.items() if self._learned.get(a) != tuple(texts)]
            rows = {r.id: r for r in await conn.execute(
                select(kb_articles).where(kb_articles.c.id.in_(stale), kb_articles.c.deleted.is_(False)))} if stale else {}
        changed = 0
        for article_id in stale:
            row, texts = rows.get(article_id), extra[article_id]
            if row is None:
                continue
            self._learned[article_id] = tuple(texts)
            await self.upsert(document_from_row(row, texts))
            changed += 1
        return changed

    def learned_for(self, article_id: str) -> tuple[str, ...]:
        """What history taught about an article, to keep when its text is re-synced."""
        return self._learned.get(article_id, ())

    async def upsert(self, doc: KbDocument) -> None:
        async with self._lock:
            self._matcher.upsert(doc)
            self._titles[doc.id] = (doc.title, doc.url)

    async def remove(self, article_id: str) -> None:
        async with self._lock:
            self._matcher.remove(article_id)
            self._titles.pop(article_id, None)

    async def suggest(self, text: str, *, language: str | None, limit: int) -> Sequence[Suggestion]:
        matches = self._matcher.search(text, limit=limit)
        out = []
        for m in matches:
            title, url = self._titles.get(m.id, ("", ""))
            out.append(Suggestion(title=title, url=url, score=float(m.score), article_id=m.id))
        return out
