"""The in-memory search index over kb's tables, and the ``AnswerSuggester`` core calls.

The index is a cache of a cache: Discourse → kb_articles (+ kb_phrasings) → Matcher.
Suggestions are computed locally, so we never call Discourse per customer message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy import select

from core.domain import Suggestion
from core.persistence import Database
from kb.matcher import KbDocument, Matcher
from kb.tables import kb_articles, kb_phrasings


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
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._matcher)

    async def load(self) -> int:
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(select(kb_articles).where(kb_articles.c.deleted.is_(False)))).all()
            extra: dict[str, list[str]] = {}
            for p in await conn.execute(select(kb_phrasings.c.article_id, kb_phrasings.c.text)):
                extra.setdefault(p.article_id, []).append(p.text)
        docs = [document_from_row(r, extra.get(r.id, ())) for r in rows]
        # Building the index is CPU work; keep the event loop responsive meanwhile.
        matcher = await asyncio.to_thread(Matcher, docs)
        async with self._lock:
            self._matcher = matcher
            self._titles = {r.id: (r.title, r.url) for r in rows}
        return len(docs)

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
