"""The in-memory search index over kb's tables, and the ``AnswerSuggester`` core calls.

The index is a cache of a cache: Discourse → kb_articles (+ kb_phrasings) → Matcher.
Suggestions are computed locally, so we never call Discourse per customer message.

With a sentence encoder, passage vectors are a third cache (``kb_vectors``): ``load``
takes what is stored, and a background task (``start``/``stop``) encodes what is missing
in a worker thread, a batch at a time, and stores it, so the event loop never waits on
the model and a restart, or another process, encodes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from posventa.core.domain import Suggestion
from posventa.core import Database
from posventa.core.suggestions import confirmed_suggestions, linked_posts
from posventa.core.tasks import cancel_and_wait
from posventa.kb.embedding import SentenceEncoder
from posventa.kb.matcher import KbDocument
from posventa.kb.search import ENCODE_BATCH, KbSearch
from posventa.kb.tables import kb_articles, kb_phrasings, kb_vectors

log = logging.getLogger(__name__)

_KEYS_PER_QUERY = 500


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
    for article_id, description in await confirmed_suggestions(conn):
        add(article_id, description)
    for kb_url, description in await linked_posts(conn):
        match = _TOPIC_IN_URL.search(kb_url.split("?", 1)[0].split("#", 1)[0])
        if match:
            add(f"discourse-{match.group(1)}", description)
    return out


def document_from_row(row, phrasings: Sequence[str] = ()) -> KbDocument:
    body = row.body
    if row.accepted_answer:
        body = f"{body}\n\n{row.accepted_answer}"
    return KbDocument(id=row.id, title=row.title, body=body, url=row.url, lang=row.lang, phrasings=tuple(phrasings))


class KbIndex:
    """Implements core's ``AnswerSuggester``. ``load()`` (re)builds from the tables;
    ``upsert``/``remove`` keep it fresh between loads."""

    def __init__(self, *, db: Database, encoder: SentenceEncoder | None = None) -> None:
        self._db = db
        self._encoder = encoder
        self._search = KbSearch(encoder=encoder)
        self._titles: dict[str, tuple[str, str]] = {}
        self._learned: dict[str, tuple[str, ...]] = {}
        self._lock = asyncio.Lock()
        self._encode_wanted = asyncio.Event()
        self._encoder_task: asyncio.Task[None] | None = None
        #: Set whenever every indexed passage has its vector (tests and tools wait on it).
        self.encoded = asyncio.Event()
        if encoder is None:
            self.encoded.set()

    def __len__(self) -> int:
        return len(self._search)

    @property
    def semantic(self) -> bool:
        return self._encoder is not None

    async def load(self) -> int:
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(select(kb_articles).where(kb_articles.c.deleted.is_(False)))).all()
            extra = await learned_phrasings(conn)
        self._learned = {k: tuple(v) for k, v in extra.items()}
        docs = [document_from_row(r, extra.get(r.id, ())) for r in rows]
        # Building the index is CPU work; keep the event loop responsive meanwhile.
        search = await asyncio.to_thread(KbSearch, docs, encoder=self._encoder)
        await self._install_stored(search)
        async with self._lock:
            self._search = search
            self._titles = {r.id: (r.title, r.url) for r in rows}
        self._wake_encoder()
        return len(docs)

    # -- passage vectors -------------------------------------------------------------------

    async def start(self) -> None:
        """Run the background encoder (a no-op without an encoder)."""
        if self._encoder is not None and self._encoder_task is None:
            self._encoder_task = asyncio.create_task(self._encode_loop(), name="kb-encoder")

    async def stop(self) -> None:
        await cancel_and_wait([self._encoder_task])
        self._encoder_task = None

    async def encode_all(self) -> int:
        """Encode every missing passage now, in the foreground (for the CLI); returns how many."""
        total = 0
        while (done := await self._encode_batch()):
            total += done
        return total

    def _wake_encoder(self) -> None:
        semantic = self._search.semantic
        if semantic is not None and semantic.pending(1):
            self.encoded.clear()
            self._encode_wanted.set()
        else:
            self.encoded.set()

    async def _install_stored(self, search: KbSearch) -> None:
        semantic = search.semantic
        if semantic is None:
            return
        keys = [key for key, _ in semantic.pending()]
        async with self._db.engine.connect() as conn:
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = keys[start : start + _KEYS_PER_QUERY]
                rows = await conn.execute(select(kb_vectors.c.key, kb_vectors.c.vector).where(kb_vectors.c.key.in_(chunk)))
                semantic.install((bytes(r.key), np.frombuffer(r.vector, dtype="<f4")) for r in rows)

    async def _encode_batch(self) -> int:
        """One batch: texts picked on the loop, encoded in a thread, installed and stored."""
        search = self._search
        semantic = search.semantic
        if semantic is None or self._encoder is None:
            return 0
        pending = semantic.pending(ENCODE_BATCH)
        if not pending:
            return 0
        vectors = await asyncio.to_thread(self._encoder.encode, [text for _, text in pending])
        pairs = [(key, vector) for (key, _), vector in zip(pending, vectors, strict=True)]
        async with self._lock:
            if self._search is search:  # a reload meanwhile starts over with its own pending set
                semantic.install(pairs)
        async with self._db.transaction() as conn:
            dialect_insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
            await conn.execute(
                dialect_insert(kb_vectors).on_conflict_do_nothing(index_elements=[kb_vectors.c.key]),
                [{"key": key, "vector": np.asarray(vector, dtype="<f4").tobytes()} for key, vector in pairs],
            )
        return len(pairs)

    async def _encode_loop(self) -> None:
        while True:
            await self._encode_wanted.wait()
            self._encode_wanted.clear()
            try:
                while await self._encode_batch():
                    await asyncio.sleep(0)  # let a suggestion in between two batches
            except Exception:
                # Storage down or a bad passage: suggestions stay lexical for the articles
                # concerned; the next change or load tries again.
                log.exception("KB passage encoding failed; suggestions for new articles stay lexical for now")
                await asyncio.sleep(5)
                self._encode_wanted.set()
                continue
            self._wake_encoder()

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
            self._search.upsert(doc)
            self._titles[doc.id] = (doc.title, doc.url)
        self._wake_encoder()

    async def remove(self, article_id: str) -> None:
        async with self._lock:
            self._search.remove(article_id)
            self._titles.pop(article_id, None)

    async def suggest(self, text: str, *, language: str | None, limit: int) -> Sequence[Suggestion]:
        search = self._search
        query_vector = None
        if self._encoder is not None and len(search):
            # ~10 ms of matrix products: in a thread, so other customers' messages go on.
            query_vector = await asyncio.to_thread(search.query_vector, text)
        matches = search.search(text, limit=limit, query_vector=query_vector)
        out = []
        for m in matches:
            title, url = self._titles.get(m.id, ("", ""))
            out.append(Suggestion(title=title, url=url, score=float(m.score), article_id=m.id))
        return out
