"""The Telegram component ``posventa serve`` starts: one Bot, both sides, one way in.

Lifecycle in python-telegram-bot's own order, with our loop in charge (no
``run_polling``): ``start`` proves the token with ``getMe`` (an invalid one stops start-up
with one line naming ``telegram.token``), then either deletes any webhook and starts the
poll loop, or registers ``{public_url}/telegram/webhook`` with its secret. If the Bot API
server cannot be reached at start-up the rest of the service still comes up and this
component keeps trying in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from telegram import BotCommand
from telegram.error import TelegramError

from posventa.bots.telegram.channel import BotLink, DeskChannel, FloodGate, TelegramChannel
from posventa.bots.telegram.client import ALLOWED_UPDATES, connect, describe, fetch_updates, make_bot
from posventa.bots.telegram.customer import CustomerSide
from posventa.bots.telegram.desk import CaseViewers, DeskSide
from posventa.bots.telegram.poller import Leader, Poller, always_leader
from posventa.bots.telegram.router import UpdateRouter
from posventa.bots.telegram.store import BotStore
from posventa.bots.telegram.webhook import SECRET_PATTERN, WEBHOOK_PATH, WebhookEndpoint
from posventa.core.attachments import AttachmentStore
from posventa.core.cases import CaseService
from posventa.core.macros import MacroService
from posventa.core.message_files import MessageFiles
from posventa.core.config import TelegramConfig
from posventa.core.contacts.service import ContactService
from posventa.core.errors import ConfigError, StorageUnavailable
from posventa.core.outgoing import Outgoing
from posventa.core import Database
from posventa.core.ports import Clock, Inbox
from posventa.core.tasks import Periodic, cancel_and_wait

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 3600.0
_COMMANDS = {
    "es": [("start", "Empezar"), ("cases", "Mis casos"), ("new", "Abrir un caso nuevo"),
           ("agent", "Hablar con una persona"), ("help", "Ayuda")],
    "pt": [("start", "Começar"), ("cases", "Meus casos"), ("new", "Abrir um caso novo"),
           ("agent", "Falar com uma pessoa"), ("help", "Ajuda")],
    "en": [("start", "Start"), ("cases", "My cases"), ("new", "Open a new case"),
           ("agent", "Talk to a person"), ("help", "Help")],
}


class TelegramBot:
    def __init__(
        self,
        *,
        config: TelegramConfig,
        config_source: str,
        public_url: str,
        inbox: Inbox,
        cases: CaseService,
        macros: MacroService,
        db: Database,
        outgoing: Outgoing,
        clock: Clock,
        files: AttachmentStore,
        on_commit: Callable[[], None],
        default_language: str,
        company_name: str,
        leader: Leader = always_leader,
        backoff_base: float = 0.5,
        availability: Callable[[int, bool], Awaitable[str | None]] | None = None,
        contacts: ContactService | None = None,
        message_files: MessageFiles | None = None,
        viewers: CaseViewers | None = None,
    ) -> None:
        self.config = config
        self._source = config_source
        self._public_url = public_url.rstrip("/")
        self.bot = make_bot(config)
        self.link = BotLink(self.bot)
        self.store = BotStore(db=db, outgoing=outgoing, clock=clock, on_commit=on_commit)
        gate = FloodGate()
        self.channel = TelegramChannel(link=self.link, store=self.store, gate=gate, files=message_files)
        self.desk_channel: DeskChannel | None = None
        desk: DeskSide | None = None
        if config.agent_chat_id:
            self.desk_channel = DeskChannel(link=self.link, store=self.store, cases=cases, files=files,
                                            chat_id=config.agent_chat_id, language=default_language, gate=gate)
            desk = DeskSide(cases=cases, macros=macros, store=self.store,
                            chat_id=config.agent_chat_id, agents=config.agents,
                            language=default_language, bot_username=self._username, availability=availability,
                            contacts=contacts, link=self.link, files=message_files,
                            viewers=viewers)
        self.customer = CustomerSide(inbox=inbox, store=self.store, files=files, link=self.link,
                                     max_file_bytes=config.max_file_bytes, default_language=default_language,
                                     company_name=company_name)
        self.router = UpdateRouter(link=self.link, customer=self.customer, desk=desk,
                                   agent_chat_id=config.agent_chat_id)
        self.poller = Poller(
            fetch=lambda offset, timeout: fetch_updates(self.bot, offset=offset, timeout=timeout),
            handle=self.router.handle_batch, timeout=config.poll_timeout_seconds, leader=leader,
            backoff_base=backoff_base, confirm=self._confirm)
        self.webhook = WebhookEndpoint(secret=config.webhook_secret, handle=self.router.handle_one,
                                       ready=lambda: self.link.ready)
        self._backoff_base = backoff_base
        #: Only the retries of a start-up that found the Bot API unreachable: a loop that
        #: ends once connected, with a backoff of its own, not a periodic job.
        self._tasks: list[asyncio.Task[None]] = []
        self._pruner = Periodic(name="telegram-prune", interval=PRUNE_EVERY_SECONDS, job=self._prune,
                                run_at_start=False, jitter=0.1, expected=(StorageUnavailable,))
        #: Read by the service's /metrics.
        self.periodic_jobs = (self._pruner,)

    @property
    def webhook_mode(self) -> bool:
        return self.config.mode == "webhook"

    def _username(self) -> str | None:
        return self.bot.username if self.link.ready else None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.webhook_mode and not SECRET_PATTERN.fullmatch(self.config.webhook_secret):
            raise ConfigError("must be 1-256 characters of A-Z, a-z, 0-9, _ or - (Telegram's rule)",
                              key="telegram.webhook_secret", file=self._source)
        if self.config.agent_chat_id and not self.config.agents:
            log.warning("telegram: agent_chat_id is set but telegram.agents is empty: nobody can act as an agent")
        try:
            await self._bring_up()
        except ConfigError:
            await self._close_bot()
            raise
        except (TelegramError, OSError) as exc:
            log.warning("telegram: Bot API server unreachable at start-up (%s); retrying in the background",
                        describe(exc))
            self._tasks.append(asyncio.create_task(self._keep_trying(), name="telegram-connect"))
        await self._pruner.start()

    async def stop(self) -> None:
        """Stop taking updates. The Bot stays open for the outbox's sends in flight: the
        service calls ``close`` once its workers have finished their batch. (Closed here,
        an upload cut off mid-body left an open socket on our side and a half-read
        request on Telegram's.)"""
        await self._pruner.stop()
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        await self.poller.stop()
        if not self.link.ready:
            self.link.close()  # never connected: a send waiting for the link gives up now

    async def close(self) -> None:
        """Close the Bot's HTTP client; after ``stop`` and after the outbox workers."""
        await self._close_bot()

    async def _close_bot(self) -> None:
        self.link.close()
        with contextlib.suppress(Exception):
            await self.bot.shutdown()

    async def _bring_up(self) -> None:
        await connect(self.bot, source=self._source)
        if self.webhook_mode:
            url = f"{self._public_url}{WEBHOOK_PATH}"
            await self.bot.set_webhook(url, secret_token=self.config.webhook_secret,
                                       allowed_updates=list(ALLOWED_UPDATES))
            log.info("telegram: webhook registered at %s", url)
        else:
            # getUpdates answers 409 while a webhook is set; keep its pending updates.
            await self.bot.delete_webhook(drop_pending_updates=False)
        self.link.set_ready()
        if not self.webhook_mode:
            await self.poller.start()
        await self._set_commands()
        log.info("telegram: @%s is up (%s)", self.bot.username, self.config.mode)

    async def _keep_trying(self) -> None:
        delay = self._backoff_base
        while True:
            await asyncio.sleep(delay)
            try:
                await self._bring_up()
                return
            except ConfigError as exc:
                log.error("telegram: %s", exc)
                delay = 300.0
            except (TelegramError, OSError) as exc:
                log.warning("telegram: still cannot reach the Bot API server (%s)", describe(exc))
                delay = min(60.0, delay * 2)

    async def _set_commands(self) -> None:
        """The command menu customers see, per language; cosmetic, so failures only log."""
        try:
            await self.bot.set_my_commands([BotCommand(c, d) for c, d in _COMMANDS["en"]])
            for language, commands in _COMMANDS.items():
                await self.bot.set_my_commands([BotCommand(c, d) for c, d in commands], language_code=language)
        except TelegramError as exc:
            log.info("telegram: setMyCommands failed (%s)", describe(exc))

    async def _confirm(self, offset: int) -> None:
        """Tell Telegram everything below ``offset`` is stored, without waiting for news."""
        if self.link.ready:
            await fetch_updates(self.bot, offset=offset, timeout=0, limit=1)

    async def _prune(self) -> None:
        pruned = await self.store.prune()
        if pruned:
            log.info("telegram: pruned %d old dedupe markers", pruned)

