"""The customer side: private-chat updates normalised into ``InboundMessage`` values.

Everything a customer sends is untrusted: text is kept as data, files are size-checked
before they are downloaded, button payloads are decoded totally and checked by core. A
customer has only the commands below; nothing here can reach an agent's action.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from telegram import CallbackQuery, InlineKeyboardMarkup, Message, User
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from posventa.bots.telegram import callbacks
from posventa.bots.telegram.channel import NEW_CASE_PROMPT, BotLink
from posventa.bots.telegram.client import RetryLater, describe
from posventa.bots.telegram.store import BotStore
from posventa.bots.telegram.texts import activity_name, all_languages, t
from posventa.core.attachments import AttachmentStore
from posventa.core.domain import AttachmentRef, ChannelName, ChoiceAnswer, InboundMessage
from posventa.core.suggestions import KB_FEEDBACK_QUESTION
from posventa.core.outgoing import ComposedMessage, Recipient
from posventa.core.ports import Inbox
from posventa.core.texts import pick_language

log = logging.getLogger(__name__)

CUSTOMER_COMMANDS = ("start", "help", "cases", "new", "agent")


@dataclass(frozen=True, slots=True)
class Media:
    """A file attached to a customer's message, before download."""

    file_id: str
    size: int | None
    filename: str
    content_type: str
    label: str


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: str


def parse_command(text: str, bot_username: str | None) -> Command | None:
    """``/name[@bot] args`` → Command; a command addressed to another bot is not ours."""
    if not text.startswith("/"):
        return None
    first_line, _, more = text.partition("\n")
    head, _, args = first_line[1:].partition(" ")
    name, _, target = head.partition("@")
    if target and (not bot_username or target.lower() != bot_username.lower()):
        return None
    if not name or len(name) > 32 or not name.replace("_", "").isalnum():
        return None
    return Command(name.lower(), f"{args}\n{more}".strip())


def media_of(message: Message) -> list[Media]:
    """The files in a message, the largest photo size only."""
    found: list[Media] = []
    mid = message.message_id
    if message.photo:
        p = message.photo[-1]
        found.append(Media(p.file_id, p.file_size, f"photo_{mid}.jpg", "image/jpeg", "photo"))
    if message.document:
        d = message.document
        found.append(Media(d.file_id, d.file_size, d.file_name or f"document_{mid}",
                           d.mime_type or "application/octet-stream", "document"))
    if message.voice:
        v = message.voice
        found.append(Media(v.file_id, v.file_size, f"voice_{mid}.ogg", v.mime_type or "audio/ogg", "voice"))
    if message.audio:
        a = message.audio
        found.append(Media(a.file_id, a.file_size, a.file_name or f"audio_{mid}", a.mime_type or "audio/mpeg",
                           "audio"))
    if message.video:
        v2 = message.video
        found.append(Media(v2.file_id, v2.file_size, v2.file_name or f"video_{mid}.mp4", v2.mime_type or "video/mp4",
                           "video"))
    if message.video_note:
        n = message.video_note
        found.append(Media(n.file_id, n.file_size, f"video_note_{mid}.mp4", "video/mp4", "video note"))
    return found


def describe_extras(message: Message) -> str:
    """Words for what carries no text or file (a location, a shared contact, a sticker)."""
    if message.location:
        return f"[location: {message.location.latitude:.5f}, {message.location.longitude:.5f}]"
    if message.contact:
        c = message.contact
        return f"[contact: {' '.join(p for p in (c.first_name, c.last_name or '') if p)} {c.phone_number}]".strip()
    if message.sticker:
        return f"[sticker {message.sticker.emoji or ''}]".strip()
    return ""


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n} bytes"


class CustomerSide:
    def __init__(self, *, inbox: Inbox, store: BotStore, files: AttachmentStore, link: BotLink,
                 max_file_bytes: int, default_language: str, company_name: str) -> None:
        self._inbox = inbox
        self._store = store
        self._files = files
        self._link = link
        self._max_file_bytes = max_file_bytes
        self._default_language = default_language
        self._company = company_name
        self._prompts = all_languages("new_case_prompt")

    def _language(self, user: User | None) -> str:
        return pick_language(user.language_code if user else None, default=self._default_language)

    # --- messages ----------------------------------------------------------------------------

    async def on_message(self, message: Message) -> None:
        user = message.from_user
        if user is None or user.is_bot:
            return
        text = message.text or message.caption or ""
        command = parse_command(text, self._link.bot.username if self._link.ready else None)
        if command is not None and command.name in CUSTOMER_COMMANDS:
            await self._command(command, message, user)
            return
        # Anything else starting with "/" is just text from a customer: it joins the case
        # as typed and never reaches an agent's action.
        await self._receive(message, user, text, new_case=self._answers_new_case_prompt(message))

    def _answers_new_case_prompt(self, message: Message) -> bool:
        parent = message.reply_to_message
        return bool(parent and parent.from_user and parent.from_user.id == self._link.bot.id
                    and (parent.text or "") in self._prompts)

    async def _receive(self, message: Message, user: User, text: str, *, new_case: bool = False,
                       choice: ChoiceAnswer | None = None) -> None:
        language = self._language(user)
        refs, notes = await self._download(message, language)
        extras = describe_extras(message)
        body = "\n".join(p for p in (text, extras, *notes) if p)
        if not body and refs:
            body = ""  # a bare photo or voice note: the files are the message
        await self._inbox.receive(InboundMessage(
            channel=ChannelName.TELEGRAM,
            external_id=f"{message.chat.id}:{message.message_id}",
            sender=str(user.id),
            text=body,
            sender_name=user.full_name[:200] or None,
            language=user.language_code,
            attachments=tuple(refs),
            choice=choice,
            new_case=new_case,
            received_at=message.date,
        ))

    async def _download(self, message: Message, language: str) -> tuple[list[AttachmentRef], list[str]]:
        refs: list[AttachmentRef] = []
        notes: list[str] = []
        limit = self._max_file_bytes
        for media in media_of(message):
            if media.size is not None and media.size > limit:
                notes.append(t("file_too_large", language, name=media.filename, size=_size(media.size),
                               limit=_size(limit)))
                continue
            try:
                file = await self._link.bot.get_file(media.file_id)
                if file.file_size is not None and file.file_size > limit:
                    notes.append(t("file_too_large", language, name=media.filename, size=_size(file.file_size),
                                   limit=_size(limit)))
                    continue
                data = await file.download_as_bytearray()
            except BadRequest as exc:
                # Gone, or over the Bot API server's own limit: keep the message, say so.
                log.info("telegram: file of message %s not downloadable (%s)", message.message_id, describe(exc))
                if "too big" in str(exc).lower():
                    notes.append(t("file_too_large", language, name=media.filename, size="?", limit=_size(limit)))
                else:
                    notes.append(t("file_unavailable", language, name=media.filename))
                continue
            except TelegramError as exc:
                raise RetryLater(f"downloading a file failed ({describe(exc)})") from None
            if len(data) > limit:
                notes.append(t("file_too_large", language, name=media.filename, size=_size(len(data)),
                               limit=_size(limit)))
                continue
            refs.append(await self._files.put(bytes(data), filename=media.filename,
                                              content_type=media.content_type))
        return refs, notes

    async def on_edit(self, message: Message) -> None:
        if message.from_user is None or message.from_user.is_bot:
            return
        text = message.text or message.caption
        if text is None:
            return
        await self._inbox.record_edit(ChannelName.TELEGRAM, f"{message.chat.id}:{message.message_id}", text)

    # --- commands ------------------------------------------------------------------------------

    async def _command(self, command: Command, message: Message, user: User) -> None:
        language = self._language(user)
        event = f"msg:{message.chat.id}:{message.message_id}"
        if command.name == "new" and command.args:
            await self._receive(message, user, command.args, new_case=True)
            return
        if command.name == "agent":
            recipient = await self._store.recipient(user.id)
            case = await self._inbox.open_case_of(recipient.contact_id) if recipient.contact_id else None
            if case is not None:
                # Stored in the case (so the desk sees it) and answered by core like a "no,
                # that did not help" on the suggestions.
                text = t("agent_requested", language) + (f"\n{command.args}" if command.args else "")
                await self._receive(message, user, text, choice=ChoiceAnswer(f"{KB_FEEDBACK_QUESTION}:{case}", "no"))
                return
            await self._reply(event, recipient, t("agent_no_case", language), language)
            return
        recipient = await self._store.recipient(user.id)
        kind = "bot"
        if command.name == "start":
            name = f", {user.first_name}" if user.first_name else ""
            body = t("start", language, name=name, company=self._company)
        elif command.name == "help":
            body = t("help", language)
        elif command.name == "cases":
            body = await self._cases_text(recipient, language)
        else:  # "new" with nothing after it: ask, and treat the answer as a new case
            body, kind = t("new_case_prompt", language), NEW_CASE_PROMPT
        await self._reply(event, recipient, body, language, kind=kind)

    async def _cases_text(self, recipient: Recipient, language: str) -> str:
        lines = await self._store.cases_of(recipient.contact_id) if recipient.contact_id else []
        if not lines:
            return t("no_cases", language)
        return "\n".join([t("cases_header", language)] + [
            f"#{c.number} · {c.title[:60]} — {activity_name(c.activity, language)}" for c in lines])

    async def _reply(self, event: str, recipient: Recipient, body: str, language: str, *, kind: str = "bot") -> None:
        # The marker and the answer commit together: a redelivered /start answers once.
        await self._store.record(event, [ComposedMessage(recipient=recipient, text=body, kind=kind,
                                                         language=language, automatic=True)])

    # --- buttons -------------------------------------------------------------------------------

    async def on_callback(self, query: CallbackQuery) -> None:
        user = query.from_user
        message = query.message
        chat_id = message.chat.id if message is not None else user.id
        packed = callbacks.decode(query.data)
        question = value = None
        label = None
        if packed is not None and packed.index is not None and message is not None:
            question, choices = await self._store.sent_choices(chat_id, message.message_id)
            if 0 <= packed.index < len(choices):
                value, label = str(choices[packed.index].get("value")), str(choices[packed.index].get("label"))
        elif packed is not None:
            question, value = packed.question, packed.value
        if isinstance(message, Message) and isinstance(message.reply_markup, InlineKeyboardMarkup):
            label = label or next((b.text for row in message.reply_markup.inline_keyboard for b in row
                                   if b.callback_data == query.data), None)
        if question and value is not None:
            await self._inbox.receive(InboundMessage(
                channel=ChannelName.TELEGRAM,
                external_id=f"cb:{query.id}",
                sender=str(user.id),
                text=label or value,
                sender_name=user.full_name[:200] or None,
                language=user.language_code,
                choice=ChoiceAnswer(question, value),
            ))
        # Stored (or not ours): stop the client's spinner, and take the pressed buttons away.
        await self._best_effort(query.answer(), "answerCallbackQuery")
        if isinstance(message, Message) and isinstance(message.reply_markup, InlineKeyboardMarkup):
            kept = _without_callbacks(message.reply_markup)
            if kept != message.reply_markup:
                await self._best_effort(message.edit_reply_markup(reply_markup=kept), "editMessageReplyMarkup")

    @staticmethod
    async def _best_effort(call, what: str) -> None:
        """Courtesy calls: never retried, never slept on (a 429 just skips them)."""
        try:
            await call
        except (RetryAfter, Forbidden, BadRequest) as exc:
            log.debug("telegram: %s skipped (%s)", what, describe(exc))
        except TelegramError as exc:
            log.info("telegram: %s failed (%s)", what, describe(exc))


def _without_callbacks(markup: InlineKeyboardMarkup) -> InlineKeyboardMarkup | None:
    rows: Sequence[Sequence] = [[b for b in row if b.callback_data is None] for row in markup.inline_keyboard]
    rows = [row for row in rows if row]
    return InlineKeyboardMarkup(rows) if rows else None
