"""Outbound: the ``telegram`` channel (customers' private chats) and the ``desk`` channel
(the agents' forum supergroup), both ``core.ports.Channel`` implementations driven by the
outbox workers.

Telegram's flood control is honoured through the outbox: a 429 becomes
``TransientDeliveryError(retry_after)``, and until that time passes every other delivery
to the same chat is turned back at once instead of hitting Telegram again. Nothing here
sleeps on a rate limit.

A delivery that needs several Bot API calls (a long text, a message with files, a new
topic) records its finished steps, so a retry resumes where the last attempt stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from telegram import Bot, ForceReply, InputFile, Message, ReplyParameters
from telegram.error import RetryAfter, TelegramError

from posventa.bots.telegram.client import chunk_text, delivery_error, retry_after_seconds
from posventa.bots.telegram.render import customer_message, esc, header_card, keyboard, topic_name
from posventa.bots.telegram.store import HEADER, TOPIC, BotStore
from posventa.core.attachments import AttachmentStore
from posventa.core.cases import CaseService
from posventa.core.domain import AttachmentRef, ChannelName, ClaimedDelivery, OutgoingFile
from posventa.core.errors import NotFound, PermanentDeliveryError, TransientDeliveryError
from posventa.core.message_files import MessageFiles

log = logging.getLogger(__name__)

HTML = "HTML"
#: Kinds of outbox items the bot itself queues (besides the inbox's and the desk's).
NEW_CASE_PROMPT = "new_case_prompt"
DESK_NOTICE = "desk_notice"
DESK_HEADER = "desk_header"
MAX_FILES_PER_MESSAGE = 10
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # the Bot API's limit for files a bot sends
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
CAPTION_MAX_CHARS = 1024


def as_photo(content_type: str, size: int) -> bool:
    """``sendPhoto`` (Telegram shows it, recompressed) for a picture it takes, else ``sendDocument``."""
    return content_type in PHOTO_TYPES and size <= PHOTO_MAX_BYTES


class BotLink:
    """The bot as the channels see it: usable once the component has checked the token.

    The outbox workers start before the Telegram component (the service starts its core
    first), so an early delivery waits briefly for ``getMe`` instead of failing an attempt.
    """

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()

    def set_ready(self) -> None:
        self._ready.set()

    def close(self) -> None:
        self._closed.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._closed.is_set()

    async def wait(self, timeout: float = 10.0) -> Bot:
        if not self._ready.is_set() and not self._closed.is_set():
            waiters = [asyncio.ensure_future(self._ready.wait()), asyncio.ensure_future(self._closed.wait())]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        if not self.ready:
            raise TransientDeliveryError("the Telegram bot is not running", retry_after=5.0)
        return self.bot


class FloodGate:
    """Per-chat "not before" times learnt from 429 answers (bounded memory)."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic, max_chats: int = 10_000) -> None:
        self._now = monotonic
        self._until: dict[int, float] = {}
        self._max = max_chats

    def check(self, chat_id: int) -> None:
        until = self._until.get(chat_id)
        if until is None:
            return
        remaining = until - self._now()
        if remaining > 0:
            raise TransientDeliveryError("waiting out Telegram flood control", retry_after=remaining)
        del self._until[chat_id]

    def hit(self, chat_id: int, seconds: float) -> None:
        if len(self._until) >= self._max:
            now = self._now()
            self._until = {c: u for c, u in self._until.items() if u > now}
        self._until[chat_id] = self._now() + seconds


def _chat_id(recipient: str) -> int:
    try:
        return int(recipient)
    except ValueError:
        raise PermanentDeliveryError(f"not a Telegram chat id: {recipient[:40]!r}", unreachable=True) from None


class _Sender:
    """Shared by both channels: one Bot API call, errors translated, 429s remembered."""

    def __init__(self, *, link: BotLink, store: BotStore, gate: FloodGate) -> None:
        self._link = link
        self._store = store
        self._gate = gate

    async def call(self, chat_id: int, what: str, fn: Callable[[Bot], Any]) -> Any:
        bot = await self._link.wait()
        self._gate.check(chat_id)
        try:
            return await fn(bot)
        except RetryAfter as exc:
            self._gate.hit(chat_id, retry_after_seconds(exc))
            raise delivery_error(exc, what=what) from None
        except TelegramError as exc:
            raise delivery_error(exc, what=what) from None

    async def parts(self, outbox_id: int, steps: Sequence[Callable[[], Any]]) -> Any:
        """Run ``steps`` in order, skipping those a previous attempt finished."""
        done = await self._store.done_parts(outbox_id) if len(steps) > 1 else set()
        result = None
        for i, step in enumerate(steps):
            if i in done:
                continue
            result = await step()
            if len(steps) > 1 and i < len(steps) - 1:
                await self._store.mark_part(outbox_id, i)
        return result


class TelegramChannel:
    """Customers' private chats: text (HTML-escaped), buttons, suggestion links, and an
    agent's files (a photo or a document each; a short text is the first one's caption)."""

    name = ChannelName.TELEGRAM

    def __init__(self, *, link: BotLink, store: BotStore, gate: FloodGate | None = None,
                 files: MessageFiles | None = None) -> None:
        self._sender = _Sender(link=link, store=store, gate=gate or FloodGate())
        self._files = files

    async def send(self, message: ClaimedDelivery) -> str | None:
        chat_id = _chat_id(message.recipient)
        markup: Any = keyboard(message.choices, message.question, message.suggestions)
        if message.kind == NEW_CASE_PROMPT:
            markup = ForceReply(selective=False)
        if message.files:
            return await self._send_files(chat_id, message, markup)
        texts = chunk_text(message.text)

        def send(text: str, reply_markup: Any) -> Any:
            return self._sender.call(chat_id, f"sendMessage to {chat_id}", lambda bot: bot.send_message(
                chat_id, esc(text), parse_mode=HTML, reply_markup=reply_markup))

        def step(i: int, text: str) -> Callable[[], Any]:
            async def run() -> Message:
                if i < len(texts) - 1:
                    return await send(text, None)
                try:
                    return await send(text, markup)
                except PermanentDeliveryError as exc:
                    # Telegram refuses link buttons to hosts it cannot see (an intranet KB):
                    # the links are in the text too, so send the choices alone.
                    if not message.suggestions or "button_url" not in str(exc).lower():
                        raise
                    return await send(text, keyboard(message.choices, message.question))
            return run

        sent: Message = await self._sender.parts(message.outbox_id, [step(i, x) for i, x in enumerate(texts)])
        return f"{chat_id}:{sent.message_id}"

    async def _send_files(self, chat_id: int, message: ClaimedDelivery, markup: Any) -> str | None:
        """Each file a step of its own (a retry resumes after the last one sent). The text
        rides as the first file's caption when it fits one and has no buttons; otherwise
        it goes first, as text messages."""
        steps: list[Callable[[], Any]] = []
        caption = None
        if len(message.text) <= CAPTION_MAX_CHARS and markup is None:
            caption = esc(message.text)
        else:
            texts = chunk_text(message.text)
            for i, text in enumerate(texts):
                steps.append(self._text(chat_id, esc(text), markup if i == len(texts) - 1 else None))
        for i, file in enumerate(message.files):
            steps.append(self._file(chat_id, file, caption if i == 0 else None))
        sent: Message | None = await self._sender.parts(message.outbox_id, steps)
        return f"{chat_id}:{sent.message_id}" if isinstance(sent, Message) else None

    def _text(self, chat_id: int, html: str, markup: Any = None) -> Callable[[], Any]:
        async def run() -> Message:
            return await self._sender.call(chat_id, f"sendMessage to {chat_id}", lambda bot: bot.send_message(
                chat_id, html, parse_mode=HTML, reply_markup=markup))
        return run

    def _file(self, chat_id: int, file: OutgoingFile, caption: str | None) -> Callable[[], Any]:
        async def run() -> Message:
            if file.size > MAX_UPLOAD_BYTES:
                raise PermanentDeliveryError(f"{file.filename!r} is larger than the Bot API's 50 MB for a bot's files")
            if self._files is None:
                raise PermanentDeliveryError("this Telegram channel has no attachment store to read files from")
            try:
                data = await self._files.read(file)
            except (OSError, ValueError):
                raise PermanentDeliveryError(f"the file {file.filename!r} is missing from the attachment store") from None
            extra: dict[str, Any] = {"caption": caption, "parse_mode": HTML} if caption else {}
            if as_photo(file.content_type, file.size):
                try:
                    return await self._sender.call(chat_id, f"sendPhoto to {chat_id}", lambda bot: bot.send_photo(
                        chat_id, InputFile(data, filename=file.filename), **extra))
                except PermanentDeliveryError as exc:
                    # A picture Telegram will not show as a photo (a very long or tiny one)
                    # still goes, as a document.
                    if not _photo_refused(exc):
                        raise
            return await self._sender.call(chat_id, f"sendDocument to {chat_id}", lambda bot: bot.send_document(
                chat_id, InputFile(data, filename=file.filename), **extra))
        return run


class DeskChannel:
    """The agents' forum supergroup: one topic per case, a header card, every customer message."""

    name = ChannelName.DESK

    def __init__(self, *, link: BotLink, store: BotStore, cases: CaseService, files: AttachmentStore,
                 chat_id: int, language: str, gate: FloodGate | None = None) -> None:
        self._link = link
        self._store = store
        self._cases = cases
        self._files = files
        self._chat = chat_id
        self._language = language
        self._sender = _Sender(link=link, store=store, gate=gate or FloodGate())

    async def send(self, message: ClaimedDelivery) -> str | None:
        case = int(message.recipient) if message.recipient.isdigit() else None
        if message.kind == DESK_HEADER:
            if case is not None:
                await self._refresh_header(case)
            return None
        try:
            if case is None:
                thread = int(message.extra.get("thread_id") or 0) or None
            else:
                thread = await self._topic(case, message.case_title)
            sent = await self._post(message, thread)
        except PermanentDeliveryError as exc:
            if case is None or not _topic_gone(exc):
                raise
            # Someone deleted or closed the topic: forget it, the retry opens a new one.
            await self._store.forget_link(TOPIC, case)
            await self._store.forget_link(HEADER, case)
            raise TransientDeliveryError("the case's topic is gone; a new one will be opened", retry_after=0.5) from None
        return f"{self._chat}:{sent.message_id}" if isinstance(sent, Message) else None

    # --- topics and the header card -------------------------------------------------------

    async def _topic(self, case: int, title: str | None) -> int:
        thread = await self._store.link(TOPIC, case, self._chat)
        if thread is None:
            if not title:
                title = (await self._case(case))["title"]
            topic = await self._sender.call(self._chat, "createForumTopic", lambda bot: bot.create_forum_topic(
                self._chat, topic_name(case, title)))
            thread = await self._store.set_link(TOPIC, case, self._chat, topic.message_thread_id)
        if await self._store.link(HEADER, case, self._chat) is None:
            card = header_card(await self._case(case), self._language)
            sent = await self._sender.call(self._chat, "sendMessage (header)", lambda bot: bot.send_message(
                self._chat, card, parse_mode=HTML, message_thread_id=thread))
            await self._store.set_link(HEADER, case, self._chat, sent.message_id, replace=True)
        return thread

    async def _refresh_header(self, case: int) -> None:
        header = await self._store.link(HEADER, case, self._chat)
        if header is None:
            return  # no topic yet: the first mirrored message posts a fresh card
        card = header_card(await self._case(case), self._language)
        try:
            await self._sender.call(self._chat, "editMessageText (header)", lambda bot: bot.edit_message_text(
                card, chat_id=self._chat, message_id=header, parse_mode=HTML))
        except PermanentDeliveryError as exc:
            text = str(exc).lower()
            if "not modified" in text:
                return
            if "not found" in text or "can't be edited" in text:
                await self._store.forget_link(HEADER, case)
                await self._topic(case, None)  # posts a new card
                return
            raise

    async def _case(self, case: int) -> dict[str, Any]:
        try:
            return await self._cases.get_case(case)
        except NotFound:
            raise PermanentDeliveryError(f"case {case} no longer exists") from None

    # --- messages ------------------------------------------------------------------------------

    async def _post(self, message: ClaimedDelivery, thread: int | None) -> Any:
        reply_to = message.extra.get("reply_to")
        reply = (ReplyParameters(int(reply_to), allow_sending_without_reply=True)
                 if reply_to and reply_to.isdigit() else None)
        steps: list[Callable[[], Any]] = []
        if message.extra.get("channel"):
            # A customer's message, from whichever channel it came.
            atts: list[AttachmentRef] = []
            name = None
            mid = message.extra.get("message_id", "")
            if mid.isdigit():
                name, atts = await self._store.inbound_details(int(mid))
            files = [a for a in atts if not a.inline][:MAX_FILES_PER_MESSAGE]
            chunks = chunk_text(message.text, 3800)
            for i, chunk in enumerate(chunks):
                html = (customer_message(chunk, name=name, channel=message.extra["channel"], attachments=len(files))
                        if i == 0 else esc(chunk))
                steps.append(self._text_step(html, thread, reply if i == 0 else None))
            steps.extend(self._file_step(a, thread) for a in files)
        else:
            for chunk in chunk_text(message.text):
                steps.append(self._text_step(esc(chunk), thread, reply))
            # An agent's reply from elsewhere (console, API) shows the team its files too.
            steps.extend(self._file_step(AttachmentRef(f.filename, f.content_type, f.size, f.sha256), thread)
                         for f in message.files[:MAX_FILES_PER_MESSAGE])
        return await self._sender.parts(message.outbox_id, steps)

    def _text_step(self, html: str, thread: int | None, reply: ReplyParameters | None) -> Callable[[], Any]:
        async def run() -> Message:
            return await self._sender.call(self._chat, "sendMessage", lambda bot: bot.send_message(
                self._chat, html, parse_mode=HTML, message_thread_id=thread, reply_parameters=reply))
        return run

    def _file_step(self, ref: AttachmentRef, thread: int | None) -> Callable[[], Any]:
        async def run() -> Message | None:
            if ref.size > MAX_UPLOAD_BYTES:
                return await self._text_step(esc(f"📎 {ref.filename} ({ref.size} bytes): too large to forward"),
                                             thread, None)()
            try:
                data = await asyncio.to_thread(self._files.path_for(ref.sha256).read_bytes)
            except (OSError, ValueError):
                log.warning("attachment %s is missing from the store", ref.sha256[:12])
                return await self._text_step(esc(f"📎 {ref.filename}: missing from the attachment store"),
                                             thread, None)()
            upload = InputFile(data, filename=ref.filename)
            if as_photo(ref.content_type, ref.size):
                return await self._sender.call(self._chat, "sendPhoto", lambda bot: bot.send_photo(
                    self._chat, upload, message_thread_id=thread))
            return await self._sender.call(self._chat, "sendDocument", lambda bot: bot.send_document(
                self._chat, upload, message_thread_id=thread))
        return run


def _photo_refused(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(p in text for p in ("photo_invalid_dimensions", "image_process_failed", "photo_ext_invalid"))


def _topic_gone(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(p in text for p in ("thread not found", "topic_deleted", "topic_closed", "topic not found"))

