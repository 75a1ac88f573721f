"""The knowledge base as one service component: the HTTP session, the Discourse client,
the index, the sync loop, the publisher channel and the webhook, built from ``[kb]``."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from core.cases import CaseService
from core.config import KbConfig
from core.kb_images import KbImages
from core.persistence import Database
from core.ports import Clock
from core.tasks import cancel_and_wait
from kb.discourse import DiscourseClient, DiscourseError
from kb.embedding import EncoderUnavailable, SentenceEncoder
from kb.index import KbIndex
from kb.publisher import KbPublishChannel
from kb.sync import KbSync
from kb.webhook import KbWebhook

log = logging.getLogger(__name__)

FULL_SYNC_EVERY_SECONDS = 24 * 3600


def load_encoder(config: KbConfig) -> SentenceEncoder | None:
    """The sentence model for ``[kb] semantic``, or None (lexical suggestions) with one log line why."""
    if not config.semantic:
        return None
    try:
        encoder = SentenceEncoder.bundled()
    except EncoderUnavailable as exc:
        log.warning("KB semantic rerank off: %s; suggestions are lexical only (./scripts/serve installs the model)", exc)
        return None
    log.info("KB semantic rerank on: %s", encoder.model_id)
    return encoder


class KbRuntime:
    def __init__(self, *, config: KbConfig, db: Database, clock: Clock, cases: CaseService,
                 session: aiohttp.ClientSession | None = None, encoder: SentenceEncoder | None = None,
                 images: KbImages | None = None) -> None:
        self._config = config
        self._own_session = session is None
        self.session = session or aiohttp.ClientSession()
        self.client = DiscourseClient(session=self.session, base_url=config.api_url, api_user=config.api_user,
                                      api_key=config.api_key, requests_per_minute=config.requests_per_minute)
        self.index = KbIndex(db=db, encoder=encoder)
        self.sync = KbSync(db=db, client=self.client, index=self.index, clock=clock, categories=config.categories)
        self.publisher = KbPublishChannel(client=self.client, cases=cases, category=config.publish_category,
                                          images=images)
        self.webhook = KbWebhook(sync=self.sync, secret=config.webhook_secret)
        self._task: asyncio.Task[None] | None = None
        #: Set after each pass of the background sync (tests and health checks wait on it).
        self.synced = asyncio.Event()

    async def start(self) -> None:
        count = await self.index.load()
        log.info("KB index loaded: %d articles", count)
        await self.index.start()
        self._task = asyncio.create_task(self._loop(), name="kb-sync")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None
        await self.webhook.drain()
        await self.index.stop()

    async def close(self) -> None:
        """Close the HTTP session; after ``stop`` and after the outbox workers, since the
        publisher channel sends through it."""
        if self._own_session:
            await self.session.close()

    async def _loop(self) -> None:
        last_full = 0.0
        while True:
            full = time.monotonic() - last_full > FULL_SYNC_EVERY_SECONDS
            try:
                report = await self.sync.sync(full=full)
                if full:
                    last_full = time.monotonic()
                log.info("KB sync: %d seen, %d updated, %d removed", report.seen, report.updated, report.removed)
                learned = await self.index.refresh_learned()
                if learned:
                    log.info("KB index: %d articles learned new phrasings from solved cases", learned)
            except DiscourseError as exc:
                log.warning("KB sync failed (%s); cases keep opening without fresh suggestions",
                            type(exc).__name__)
            except Exception:
                log.exception("KB sync crashed; will retry")
            self.synced.set()
            await asyncio.sleep(self._config.sync_interval_seconds)
