"""The agents' desk, inbound: what people write in the agents' forum supergroup.

Authorisation runs first (Errbot's ``is_from_self`` habit): only the Telegram user ids in
``[telegram] agents`` act, anyone else gets a polite, rate-limited refusal and nothing
happens. An agent's text in a case's topic is a reply to the customer (``cases.reply``,
which routes it to the customer's own channel through the outbox), and so is a photo or
document (downloaded with ``getFile``, taken by the upload rule as any agent's file, its
caption the text; a refused one is answered in the topic with the reason); ``/commands`` map onto
``CaseService`` methods. Answers to the agent go back into the topic through the outbox
``desk`` channel, so a 429 there is waited out by the outbox, never in this handler.

Each update is marked in ``processed_events`` together with those answers, and skipped
when seen again. The case action itself commits just before that marker: a crash in the
few microseconds between the two commits would repeat the action once on redelivery
(at-least-once, never lost).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from telegram import Message, User
from telegram.error import BadRequest, TelegramError

from posventa.bots.telegram.channel import DESK_HEADER, DESK_NOTICE, BotLink
from posventa.bots.telegram.client import RetryLater, describe
from posventa.bots.telegram.customer import Media, media_of, parse_command
from posventa.bots.telegram.store import BotStore
from posventa.bots.telegram.texts import contact_name, t
from posventa.core.cases import CaseService
from posventa.core.contacts.service import ContactService
from posventa.core.domain import Activity, ChannelName, KbAction
from posventa.core.domain import AttachmentRef
from posventa.core.macros import MacroService
from posventa.core.message_files import MessageFiles
from posventa.core.errors import DomainError, StaleReply, ValidationError
from posventa.core.uploads import TOO_LARGE, UploadRefused, refusal_text
from posventa.core.outgoing import ComposedMessage, Recipient
from posventa.core.rate_limit import RateLimiter
from posventa.core.replies import case_type_from_word
from posventa.core.texts import case_type_name
from posventa.core.workflow import MissingCaseType

log = logging.getLogger(__name__)

#: One refusal per stranger per this many seconds: a courtesy, not a conversation.
REFUSAL_INTERVAL_SECONDS = 600.0
MAX_REMEMBERED_STRANGERS = 1000


class _Info(Exception):
    """A command answered with information (usage, the category list): nothing changed."""


#: Who is on a case in the console: (name, typing) for each agent with its page open.
CaseViewers = Callable[[int], Sequence[tuple[str, bool]]]


class DeskSide:
    def __init__(self, *, cases: CaseService, macros: MacroService, store: BotStore, chat_id: int, agents: Collection[int],
                 language: str, bot_username: Callable[[], str | None],
                 monotonic: Callable[[], float] = time.monotonic,
                 availability: Callable[[int, bool], Awaitable[str | None]] | None = None,
                 contacts: ContactService | None = None, link: BotLink | None = None,
                 files: MessageFiles | None = None, viewers: CaseViewers | None = None) -> None:
        self._cases = cases
        #: The console's collision warnings (who has the case open, who is typing there),
        #: shared across processes; None where no console runs.
        self._viewers = viewers
        #: A photo or document an agent sends in a topic: downloaded through the bot and
        #: taken by the upload rule (None: files are not forwarded).
        self._bot_link = link
        self._files = files
        #: /available and /away: the agent (by Telegram user id) takes automatic assignments or not.
        self._availability = availability
        self._macros = macros
        #: The case's customer as a record (/contact); None where contacts are not wired.
        self._contacts = contacts
        self._store = store
        self._chat = chat_id
        self._agents = frozenset(agents)
        self._language = language
        self._bot_username = bot_username
        # One token a stranger, back after REFUSAL_INTERVAL_SECONDS.
        self._refusals = RateLimiter(per_minute=60.0 / REFUSAL_INTERVAL_SECONDS, capacity=1, clock=monotonic,
                                     max_keys=MAX_REMEMBERED_STRANGERS)
        self._commands: dict[str, Callable[[int, str, str], Awaitable[str]]] = {
            "type": self._type, "category": self._category, "derive": self._derive, "assign": self._assign,
            "note": self._note, "answer": self._answer, "close": self._close, "publish": self._publish,
            "link": self._link, "nopublish": self._nopublish, "m": self._macro, "contact": self._contact,
        }

    def is_agent(self, user: User | None) -> bool:
        return user is not None and not user.is_bot and user.id in self._agents

    async def on_message(self, message: Message) -> None:
        user = message.from_user
        thread = message.message_thread_id if message.is_topic_message else None
        text = message.text or message.caption or ""
        command = parse_command(text, self._bot_username())
        if text.startswith("/") and command is None:
            return  # a command for another bot
        case = await self._store.case_for_topic(self._chat, thread) if thread is not None else None
        event = f"desk:{message.chat.id}:{message.message_id}"

        if message.sender_chat is not None:
            # An anonymous admin writes "as the group" (from the GroupAnonymousBot user): we
            # cannot tell which agent it is. Posts from a linked channel land here too.
            if message.sender_chat.id == self._chat and (case is not None or command is not None):
                await self._answer_once(event, case, thread, message.message_id, t("desk_anonymous", self._language))
            return
        if user is None or user.is_bot:
            return  # other bots in the group (never ourselves: Telegram does not echo those)
        if not self.is_agent(user):
            if (case is not None or command is not None) and self._may_refuse(user):
                name = f", {user.first_name}" if user and user.first_name else ""
                await self._answer_once(event, case, thread, message.message_id,
                                        t("desk_refusal", self._language, name=name))
            return

        if await self._store.seen(event):
            return
        agent = (user.full_name or user.username or str(user.id))[:120]
        if command is not None:
            if command.name in ("help", "start"):
                await self._answer_once(event, case, thread, message.message_id, t("desk_help", self._language))
                return
            if command.name in ("available", "away") and self._availability is not None:
                name = await self._availability(user.id, command.name == "available")
                key = "desk_unknown_agent" if name is None else f"desk_{command.name}"
                await self._answer_once(event, case, thread, message.message_id,
                                        t(key, self._language, name=name or "", user_id=user.id))
                return
            if case is None:
                await self._answer_once(event, None, thread, message.message_id, t("desk_no_case", self._language))
                return
            handler = self._commands.get(command.name)
            if handler is None:
                await self._answer_once(event, case, thread, message.message_id, t(
                    "desk_unknown_command", self._language, command=command.name[:32],
                    help=t("desk_help", self._language)))
                return
            try:
                reply, changed = await handler(case, command.args, agent), True
            except _Info as info:
                reply, changed = str(info), False
            except MissingCaseType as exc:
                move = t(f"desk_move_{exc.target.value}", self._language)
                reply, changed = t("desk_needs_type", self._language, move=move), False
            except DomainError as exc:
                reply, changed = t("desk_error", self._language, error=str(exc)), False
            await self._answer_once(event, case, thread, message.message_id, reply, refresh_header=changed)
            return
        if case is None:
            return  # agents talking among themselves outside case topics
        files: list[AttachmentRef] = []
        if not message.text:
            media = [m for m in media_of(message) if m.label in ("photo", "document")]
            if not media or self._files is None or self._bot_link is None:
                # A voice note, a sticker, a video: say it did not go out.
                await self._answer_once(event, case, thread, message.message_id, t("desk_text_only", self._language))
                return
            for m in media:
                try:
                    files.append(await self._take(m))
                except UploadRefused as refused:
                    log.info("desk: a file for case %s refused: %s", case, refused)
                    await self._answer_once(event, case, thread, message.message_id, t(
                        "desk_file_refused", self._language, name=m.filename,
                        reason=refusal_text(refused, self._files.policy, self._language)))
                    return
                except DomainError as exc:
                    await self._answer_once(event, case, thread, message.message_id,
                                            t("desk_reply_failed", self._language, error=str(exc)))
                    return
        # The reply answers what the topic showed when the agent sent it: a customer message
        # or another agent's reply that reached the case after that refuses it (StaleReply,
        # the console's and the API's rule), and the agent is told so in the topic.
        seen = await self._store.seen_in_topic(case, self._chat, message.message_id)
        try:
            await self._cases.reply(case, message.text or message.caption, agent=agent, mirror_to_desk=False,
                                    files=files, seen_message_id=seen)
        except StaleReply:
            await self._answer_once(event, case, thread, message.message_id, t("desk_stale", self._language))
            return
        except DomainError as exc:
            await self._answer_once(event, case, thread, message.message_id,
                                    t("desk_reply_failed", self._language, error=str(exc)))
            return
        typing = self._typing_in_console(case)
        if typing:
            await self._answer_once(event, case, thread, message.message_id, typing)
        else:
            await self._store.record(event)

    def _typing_in_console(self, case: int) -> str | None:
        """A warning naming the agents typing a reply to ``case`` in the console, if any."""
        if self._viewers is None:
            return None
        try:
            names = [name for name, typing in self._viewers(case) if typing]
        except Exception:  # a warning lost must never lose the reply's marker
            log.exception("desk: could not read who is on case %s", case)
            return None
        if not names:
            return None
        key = "desk_typing_one" if len(names) == 1 else "desk_typing_many"
        return t(key, self._language, names=", ".join(names[:5]))

    async def _take(self, media: Media) -> AttachmentRef:
        """Download a photo or document of the topic (``getFile``, then the file) and take it
        by the upload rule, as any file an agent attaches."""
        assert self._files is not None and self._bot_link is not None
        limit = self._files.policy.max_bytes
        if media.size is not None and media.size > limit:
            raise UploadRefused(TOO_LARGE, f"the file is larger than {limit} bytes").naming("file", media.filename)
        try:
            file = await self._bot_link.bot.get_file(media.file_id)
            data = bytes(await file.download_as_bytearray())
        except BadRequest as exc:
            if "too big" in str(exc).lower():  # over the Bot API's 20 MB for downloads
                raise UploadRefused(TOO_LARGE, "the file is too big to download").naming("file", media.filename) \
                    from None
            log.info("desk: file %s not downloadable (%s)", media.filename, describe(exc))
            raise ValidationError(f"{media.filename!r} cannot be downloaded from Telegram", field="file") from None
        except TelegramError as exc:
            raise RetryLater(f"downloading a desk file failed ({describe(exc)})") from None

        async def chunks():
            yield data

        return await self._files.take(chunks(), filename=media.filename, field="file")

    def _may_refuse(self, user: User | None) -> bool:
        return not self._refusals.allow(user.id if user is not None else 0)

    async def _answer_once(self, event: str, case: int | None, thread: int | None, reply_to: int, text: str, *,
                           refresh_header: bool = False) -> None:
        recipient = str(case) if case is not None else f"thread:{thread or 0}"
        items = [ComposedMessage(recipient=Recipient(ChannelName.DESK, recipient), text=text, kind=DESK_NOTICE,
                                 case_id=case, language=self._language,
                                 extra={"reply_to": str(reply_to), "thread_id": str(thread or "")})]
        if refresh_header and case is not None:
            items.append(ComposedMessage(recipient=Recipient(ChannelName.DESK, str(case)), text="",
                                         kind=DESK_HEADER, case_id=case, language=self._language))
        await self._store.record(event, items)

    # --- commands: (case, args, agent) → confirmation ----------------------------------------------

    def _usage(self, usage: str) -> _Info:
        return _Info(t("desk_usage", self._language, usage=usage))

    async def _type(self, case: int, args: str, agent: str) -> str:
        value = case_type_from_word(args) if args else None
        if value is None:
            raise self._usage("/type request|complaint|incident")
        await self._cases.set_type(case, value, agent=agent)
        return t("ok_type", self._language, value=case_type_name(value, self._language))

    async def _category(self, case: int, args: str, agent: str) -> str:
        parts = args.split()
        if not parts:
            raise _Info(await self._category_list())
        if len(parts) > 2 or not all(p.isdigit() for p in parts):
            raise self._usage("/category ID [SUB-ID]")
        result: dict[str, Any] = await self._cases.set_category(
            case, int(parts[0]), int(parts[1]) if len(parts) > 1 else None, agent=agent)
        name = (result.get("category") or {}).get("name", parts[0])
        if result.get("subcategory"):
            name += f" › {result['subcategory']['name']}"
        return t("ok_category", self._language, value=name)

    async def _category_list(self) -> str:
        tree = await self._cases.list_categories()
        active = [c for c in tree if c.get("active", True)]
        if not active:
            return t("no_categories", self._language)
        lines = [t("categories", self._language)]
        for c in active[:50]:
            lines.append(f"{c['id']} · {c['name']}")
            lines.extend(f"    {s['id']} · {s['name']}" for s in c.get("subcategories", []) if s.get("active", True))
        return "\n".join(lines)

    async def _derive(self, case: int, args: str, agent: str) -> str:
        if not args:
            raise self._usage("/derive SECTOR")
        await self._cases.change_activity(case, Activity.DERIVED.value, agent=agent, sector=args[:120])
        return t("ok_derive", self._language, value=args[:120])

    async def _assign(self, case: int, args: str, agent: str) -> str:
        assignee = args[:120] or agent
        if assignee == "-":
            await self._cases.assign(case, None, agent=agent)
            return t("ok_unassign", self._language)
        await self._cases.assign(case, assignee, agent=agent)
        return t("ok_assign", self._language, value=assignee)

    async def _note(self, case: int, args: str, agent: str) -> str:
        if not args:
            raise self._usage("/note TEXT")
        await self._cases.add_note(case, args, agent=agent)
        return t("ok_note", self._language)

    async def _answer(self, case: int, args: str, agent: str) -> str:
        await self._cases.change_activity(case, Activity.ANSWER_SENT.value, agent=agent)
        return t("ok_answer", self._language)

    async def _close(self, case: int, args: str, agent: str) -> str:
        await self._cases.change_activity(case, Activity.CLOSED.value, agent=agent)
        return t("ok_close", self._language)

    async def _publish(self, case: int, args: str, agent: str) -> str:
        await self._cases.kb_action(case, KbAction.PUBLISH.value, agent=agent)
        return t("ok_publish", self._language)

    async def _link(self, case: int, args: str, agent: str) -> str:
        if not args:
            raise self._usage("/link URL")
        await self._cases.kb_action(case, KbAction.LINK.value, agent=agent, url=args.split()[0])
        return t("ok_link", self._language, value=args.split()[0])

    async def _macro(self, case: int, args: str, agent: str) -> str:
        """/m NAME: reply with a shared canned response, rendered in the customer's language.
        (Personal macros belong to console usernames, which a Telegram user is not.)"""
        if not args:
            names = ", ".join(m["name"] for m in (await self._macros.list())[:30])
            raise self._usage("/m NAME" + (f" · {names}" if names else ""))
        sent = await self._macros.use(args.strip(), case, agent=agent, owner=None, mirror_to_desk=False)
        return t("ok_macro", self._language, name=args.strip()[:120], text=sent["text"][:3000])

    async def _contact(self, case: int, args: str, agent: str) -> str:
        """Who the customer is: identities, organization, their cases on every channel and
        possible duplicates (merging is done in the console)."""
        if self._contacts is None:
            raise _Info(t("desk_unknown_command", self._language, command="contact",
                          help=t("desk_help", self._language)))
        contact_id = (await self._cases.get_case(case))["contact"]["id"]
        contact = await self._contacts.get(contact_id)
        cases = await self._contacts.cases(contact_id, limit=10)
        duplicates = await self._contacts.duplicates(contact_id)
        raise _Info(t(
            "desk_contact", self._language, id=contact_id,
            name=contact_name(contact["name"], contact_id, self._language) or "—",
            organization=f" · {contact['organization']['name']}" if contact["organization"] else "",
            identities=", ".join(f"{i['kind']} {i['address']}" for i in contact["identities"]) or "—",
            cases=", ".join(f"#{c['number']} ({c['channel']}, {c['activity']})" for c in cases) or "—",
            duplicates=t("desk_duplicates", self._language,
                         ids=", ".join(f"#{d['contact']['id']}" for d in duplicates)) if duplicates else ""))

    async def _nopublish(self, case: int, args: str, agent: str) -> str:
        await self._cases.kb_action(case, KbAction.NONE.value, agent=agent)
        return t("ok_nopublish", self._language)
