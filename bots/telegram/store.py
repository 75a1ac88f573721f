"""What the Telegram adapter keeps in the database besides customer messages.

- events, through core's ``EventLedger`` (source ``telegram``): updates that are not
  customer messages (agent commands and replies, customer commands) are marked in the
  same transaction as the bot's answers, so a redelivered update does nothing twice;
  source ``telegram_part``: which parts of a multi-part delivery went out, so a retry
  resumes instead of repeating them;
- ``case_links`` (its own table, ``bots/telegram/tables.py``): the case's forum topic
  (``telegram_topic``) and header card (``telegram_header``), refs ``"<chat id>:<id>"`` so
  a new agents' group starts afresh;
- read-only lookups through core's ``CaseLookup``: a customer's identity and cases, the
  buttons we sent, a message's sender and attachments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from posventa.bots.telegram.tables import case_links
from posventa.core import CaseLine, CaseLookup, Database, EventLedger
from posventa.core.domain import AttachmentRef, ChannelName
from posventa.core.outgoing import ComposedMessage, Outgoing, Recipient
from posventa.core.ports import Clock

__all__ = ["BotStore", "CaseLine"]

EVENTS = "telegram"
PARTS = "telegram_part"
TOPIC = "telegram_topic"
HEADER = "telegram_header"
#: Telegram redelivers an unconfirmed update for 24 hours; keep markers well beyond that.
KEEP_EVENTS = timedelta(days=7)


class BotStore:
    def __init__(self, *, db: Database, outgoing: Outgoing, clock: Clock, on_commit: Callable[[], None]) -> None:
        self._db = db
        self._clock = clock
        self._ledger = EventLedger(db=db, outgoing=outgoing, clock=clock, on_commit=on_commit)
        self._lookup = CaseLookup(db=db)

    # --- at-least-once updates that are not customer messages --------------------------------

    async def seen(self, event_id: str, *, source: str = EVENTS) -> bool:
        return await self._ledger.seen(source, event_id)

    async def record(self, event_id: str, items: Sequence[ComposedMessage] = (), *, source: str = EVENTS) -> bool:
        """Mark ``event_id`` done and queue ``items``, in one transaction.

        Returns False (and queues nothing) when the event was already recorded: a
        redelivered update, or another process that got there first.
        """
        return await self._ledger.record(source, event_id, items)

    async def queue(self, items: Sequence[ComposedMessage]) -> None:
        """Queue deliveries that need no dedupe marker."""
        await self._ledger.queue(items)

    async def done_parts(self, outbox_id: int) -> set[int]:
        prefix = f"{outbox_id}:"
        marked = await self._ledger.marked(PARTS, prefix)
        return {int(e[len(prefix):]) for e in marked if e[len(prefix):].isdigit()}

    async def mark_part(self, outbox_id: int, part: int) -> None:
        await self._ledger.mark(PARTS, f"{outbox_id}:{part}")

    async def prune(self) -> int:
        return await self._ledger.prune((EVENTS, PARTS), self._clock.now() - KEEP_EVENTS)

    # --- customers ---------------------------------------------------------------------------

    async def recipient(self, user_id: int) -> Recipient:
        """The customer's Telegram identity as an outbox recipient (ids None before first contact)."""
        return await self._lookup.recipient(ChannelName.TELEGRAM, str(user_id))

    async def cases_of(self, contact_id: int, *, limit: int = 10) -> list[CaseLine]:
        """The contact's cases, open ones first, newest first."""
        return await self._lookup.cases_of(contact_id, limit=limit)

    async def sent_choices(self, chat_id: int, message_id: int) -> tuple[str | None, list[dict[str, Any]]]:
        """The question and choices of a keyboard we sent, from the outbox row that sent it."""
        return await self._lookup.sent_choices(ChannelName.TELEGRAM, str(chat_id), f"{chat_id}:{message_id}")

    # --- the desk ----------------------------------------------------------------------------

    async def case_for_topic(self, chat_id: int, thread_id: int) -> int | None:
        async with self._db.engine.connect() as conn:
            return (await conn.execute(select(case_links.c.case_id).where(
                case_links.c.system == TOPIC, case_links.c.ref == f"{chat_id}:{thread_id}"))).scalar()

    async def link(self, system: str, case_id: int, chat_id: int) -> int | None:
        """The topic (or header message) id of ``case_id`` in ``chat_id``, if there is one."""
        async with self._db.engine.connect() as conn:
            ref = (await conn.execute(select(case_links.c.ref).where(
                case_links.c.system == system, case_links.c.case_id == case_id))).scalar()
        chat, _, ident = (ref or "").partition(":")
        if chat != str(chat_id) or not ident.lstrip("-").isdigit():
            return None  # none yet, or it belongs to a previous agents' group
        return int(ident)

    async def set_link(self, system: str, case_id: int, chat_id: int, ident: int, *,
                       replace: bool = False) -> int:
        """Remember ``ident``; returns the id that won (another process may have linked first)."""
        ref = f"{chat_id}:{ident}"
        try:
            async with self._db.transaction() as conn:
                current = (await conn.execute(select(case_links.c.ref).where(
                    case_links.c.system == system, case_links.c.case_id == case_id))).scalar()
                if current is None:
                    await conn.execute(insert(case_links).values(case_id=case_id, system=system, ref=ref))
                    return ident
                chat, _, existing = current.partition(":")
                if replace or chat != str(chat_id) or not existing.lstrip("-").isdigit():
                    await conn.execute(update(case_links).where(
                        case_links.c.system == system, case_links.c.case_id == case_id).values(ref=ref))
                    return ident
                return int(existing)
        except IntegrityError:
            found = await self.link(system, case_id, chat_id)
            return found if found is not None else ident

    async def forget_link(self, system: str, case_id: int) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(delete(case_links).where(case_links.c.system == system,
                                                        case_links.c.case_id == case_id))

    async def seen_in_topic(self, case_id: int, chat_id: int, message_id: int) -> int:
        """The newest customer message or agent reply of the case that its topic showed
        before the desk's message ``message_id`` (Telegram numbers a chat's messages in
        order): a copy not sent yet, or sent after it, was not there to read. Copies that
        failed for good are left out (nobody will ever read them there)."""
        unseen = [m for m in await self._lookup.desk_mirrors(case_id)
                  if m.status != "failed" and not _shown_before(m.external_id, chat_id, message_id)]
        if not unseen:
            return await self._lookup.newest_message(case_id)
        customers = [m.message_id for m in unseen if m.message_id is not None]
        replies = [m.queued_at for m in unseen if m.message_id is None]
        # A customer message by its id (its stored time may be the email's Date); an agent's
        # reply by the commit that queued its copy (the same moment as the reply).
        return await self._lookup.newest_message(case_id, below_id=min(customers) if customers else None,
                                                 before=min(replies) if replies else None)

    async def inbound_details(self, message_id: int) -> tuple[str | None, list[AttachmentRef]]:
        """A customer message's sender name and files, for its mirror in the desk."""
        return await self._lookup.inbound_details(message_id)

    def now(self) -> datetime:
        return self._clock.now()


def _shown_before(external_id: str | None, chat_id: int, message_id: int) -> bool:
    """Whether a desk copy sent as ``"<chat>:<id>"`` came before ``message_id`` in that chat."""
    chat, _, ident = (external_id or "").partition(":")
    return chat == str(chat_id) and ident.isdigit() and int(ident) < message_id
