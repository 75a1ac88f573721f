"""Pull the Discourse knowledge base into kb's tables, incrementally.

Topic lists are ordered by ``bumped_at``, so a later run walks only what was bumped
since the last one (with an overlap, because topics bumped during a walk shift pages).
Edits don't bump a topic in Discourse: webhooks (``post_edited``) catch those, and a full
walk (``full=True``, daily from ``serve``) catches whatever a lost webhook missed and
marks topics that disappeared as deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from posventa.core import Database
from posventa.core.ports import Clock
from posventa.kb.discourse import DiscourseClient, DiscourseNotFound, Topic
from posventa.kb.index import KbIndex, document_from_row
from posventa.kb.tables import kb_articles, kb_sync_state

log = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=10)
STATE_KEY = "discourse.bumped_since"


def article_id(topic_id: int) -> str:
    return f"discourse-{topic_id}"


@dataclass(frozen=True, slots=True)
class SyncReport:
    seen: int
    updated: int
    removed: int
    full: bool


class KbSync:
    def __init__(self, *, db: Database, client: DiscourseClient, index: KbIndex, clock: Clock,
                 categories: Sequence[int] = ()) -> None:
        self._db = db
        self._client = client
        self._index = index
        self._clock = clock
        self._categories = tuple(categories)
        self._running = asyncio.Lock()

    async def sync(self, *, full: bool = False, progress: Callable[[int, str], None] | None = None) -> SyncReport:
        async with self._running:  # one walk at a time: the loop and `kb sync` may overlap
            return await self._sync(full=full, progress=progress)

    async def _sync(self, *, full: bool, progress: Callable[[int, str], None] | None) -> SyncReport:
        since = None if full else await self._bumped_since()
        known = await self._known_updated_at()
        seen: set[int] = set()
        updated = 0
        newest: datetime | None = None
        async for summary in self._client.iter_topics(category_ids=self._categories, bumped_since=since):
            seen.add(summary.id)
            newest = summary.bumped_at if newest is None else max(newest, summary.bumped_at)
            if progress:
                progress(len(seen), summary.title)
            stamp = known.get(article_id(summary.id))
            if stamp is not None and stamp >= summary.bumped_at and not full:
                continue
            if await self.refresh_topic(summary.id):
                updated += 1
        removed = 0
        if full:
            for aid in set(known) - {article_id(t) for t in seen}:
                await self._mark_deleted(aid)
                removed += 1
        # The forum's own clock, not ours: the next walk starts at the newest bump we saw
        # (minus an overlap for topics bumped while we walked), whatever the clock skew.
        if newest is not None:
            await self._set_bumped_since(newest - OVERLAP)
        return SyncReport(seen=len(seen), updated=updated, removed=removed, full=since is None)

    async def refresh_topic(self, topic_id: int) -> bool:
        """Fetch one topic and store it (webhook or sync). False when it is gone."""
        try:
            topic = await self._client.topic(topic_id)
        except DiscourseNotFound:
            await self._mark_deleted(article_id(topic_id))
            return False
        if self._categories and topic.category_id not in self._categories:
            await self._mark_deleted(article_id(topic_id))
            return False
        await self._store(topic)
        return True

    async def remove_topic(self, topic_id: int) -> None:
        await self._mark_deleted(article_id(topic_id))

    async def _store(self, topic: Topic) -> None:
        values = {
            "topic_id": topic.id, "title": topic.title[:300], "body": topic.first_post_text,
            "accepted_answer": topic.accepted_answer_text, "tags": list(topic.tags), "category_id": topic.category_id,
            "url": topic.url[:1000], "updated_at": topic.updated_at, "bumped_at": topic.updated_at, "deleted": False,
        }
        aid = article_id(topic.id)
        async with self._db.transaction() as conn:
            # An upsert: a webhook refresh, the periodic sync or another process may store
            # the same topic at the same moment.
            dialect_insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
            stmt = dialect_insert(kb_articles).values(id=aid, **values)
            await conn.execute(stmt.on_conflict_do_update(index_elements=[kb_articles.c.id], set_=values))
            row = (await conn.execute(select(kb_articles).where(kb_articles.c.id == aid))).one()
        await self._index.upsert(document_from_row(row, self._index.learned_for(aid)))

    async def _mark_deleted(self, aid: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(update(kb_articles).where(kb_articles.c.id == aid).values(deleted=True))
        await self._index.remove(aid)

    async def _known_updated_at(self) -> dict[str, datetime]:
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(select(kb_articles.c.id, kb_articles.c.bumped_at)
                                      .where(kb_articles.c.deleted.is_(False)))
            return {r.id: r.bumped_at for r in rows if r.bumped_at is not None}

    async def _bumped_since(self) -> datetime | None:
        async with self._db.engine.connect() as conn:
            value = (await conn.execute(select(kb_sync_state.c.value).where(kb_sync_state.c.key == STATE_KEY))).scalar()
        return datetime.fromisoformat(value) if value else None

    async def _set_bumped_since(self, moment: datetime) -> None:
        async with self._db.transaction() as conn:
            result = await conn.execute(update(kb_sync_state).where(kb_sync_state.c.key == STATE_KEY)
                                        .values(value=moment.isoformat()))
            if not result.rowcount:
                await conn.execute(kb_sync_state.insert().values(key=STATE_KEY, value=moment.isoformat()))
