"""What the Telegram adapter keeps in the database besides customer messages.

- ``processed_events`` (source ``telegram``): updates that are not customer messages (agent
  commands and replies, customer commands) are marked here, in the same transaction as
  the bot's answers, so a redelivered update does nothing twice.
- ``processed_events`` (source ``telegram_part``): which parts of a multi-part delivery
  went out, so a retry resumes instead of repeating them.
- ``case_links``: the case's forum topic (``telegram_topic``) and header card
  (``telegram_header``), refs ``"<chat id>:<id>"`` so a new agents' group starts afresh.
- read-only lookups: a customer's cases, the case behind a topic, a message's attachments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.domain import Activity, AttachmentRef, ChannelName, Direction
from core.outgoing import Outgoing, ComposedMessage, Recipient
from core.persistence import Database
from core.persistence.schema import (
    attachments,
    case_links,
    cases,
    contact_identities,
    messages,
    outbox,
    processed_events,
)
from core.ports import Clock

EVENTS = "telegram"
PARTS = "telegram_part"
TOPIC = "telegram_topic"
HEADER = "telegram_header"
#: Telegram redelivers an unconfirmed update for 24 hours; keep markers well beyond that.
KEEP_EVENTS = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class CaseLine:
    number: int
    title: str
    activity: str


class BotStore:
    def __init__(self, *, db: Database, outgoing: Outgoing, clock: Clock, on_commit: Callable[[], None]) -> None:
        self._db = db
        self._outgoing = outgoing
        self._clock = clock
        self._on_commit = on_commit

    # --- at-least-once updates that are not customer messages --------------------------------

    async def seen(self, event_id: str, *, source: str = EVENTS) -> bool:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(processed_events.c.event_id).where(
                processed_events.c.source == source, processed_events.c.event_id == event_id[:200]))).first()
        return row is not None

    async def record(self, event_id: str, items: Sequence[ComposedMessage] = (), *, source: str = EVENTS) -> bool:
        """Mark ``event_id`` done and queue ``items``, in one transaction.

        Returns False (and queues nothing) when the event was already recorded: a
        redelivered update, or another process that got there first.
        """
        now = self._clock.now()
        try:
            async with self._db.transaction() as conn:
                exists = (await conn.execute(select(processed_events.c.event_id).where(
                    processed_events.c.source == source, processed_events.c.event_id == event_id[:200]))).first()
                if exists is not None:
                    return False
                await conn.execute(insert(processed_events).values(source=source, event_id=event_id[:200], at=now))
                if items:
                    await self._outgoing.add(conn, list(items), now=now)
        except IntegrityError:
            return False
        if items:
            self._on_commit()
        return True

    async def queue(self, items: Sequence[ComposedMessage]) -> None:
        """Queue deliveries that need no dedupe marker."""
        if not items:
            return
        async with self._db.transaction() as conn:
            await self._outgoing.add(conn, list(items), now=self._clock.now())
        self._on_commit()

    async def done_parts(self, outbox_id: int) -> set[int]:
        prefix = f"{outbox_id}:"
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(select(processed_events.c.event_id).where(
                processed_events.c.source == PARTS, processed_events.c.event_id.startswith(prefix)))
            return {int(r[0][len(prefix):]) for r in rows if r[0][len(prefix):].isdigit()}

    async def mark_part(self, outbox_id: int, part: int) -> None:
        try:
            async with self._db.transaction() as conn:
                await conn.execute(insert(processed_events).values(source=PARTS, event_id=f"{outbox_id}:{part}",
                                                                   at=self._clock.now()))
        except IntegrityError:
            pass

    async def prune(self) -> int:
        before = self._clock.now() - KEEP_EVENTS
        async with self._db.transaction() as conn:
            result = await conn.execute(delete(processed_events).where(
                processed_events.c.source.in_((EVENTS, PARTS)), processed_events.c.at < before))
            return result.rowcount or 0

    # --- customers ---------------------------------------------------------------------------

    async def recipient(self, user_id: int) -> Recipient:
        """The customer's Telegram identity as an outbox recipient (ids None before first contact)."""
        address = str(user_id)
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(contact_identities.c.id, contact_identities.c.contact_id).where(
                contact_identities.c.channel == ChannelName.TELEGRAM.value,
                contact_identities.c.address == address))).first()
        if row is None:
            return Recipient(ChannelName.TELEGRAM, address)
        return Recipient(ChannelName.TELEGRAM, address, row.id, row.contact_id)

    async def cases_of(self, contact_id: int, *, limit: int = 10) -> list[CaseLine]:
        """The contact's cases, open ones first, newest first."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(cases.c.id, cases.c.title, cases.c.activity)
                .where(cases.c.contact_id == contact_id)
                .order_by((cases.c.activity == Activity.CLOSED.value), cases.c.id.desc())
                .limit(limit))
            return [CaseLine(r.id, r.title, r.activity) for r in rows]

    async def sent_choices(self, chat_id: int, message_id: int) -> tuple[str | None, list[dict[str, Any]]]:
        """The question and choices of a keyboard we sent, from the outbox row that sent it."""
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(
                select(outbox.c.payload).where(
                    outbox.c.channel == ChannelName.TELEGRAM.value, outbox.c.recipient == str(chat_id),
                    outbox.c.external_id == f"{chat_id}:{message_id}")
                .order_by(outbox.c.id.desc()).limit(1))).first()
        if row is None or not isinstance(row.payload, dict):
            return None, []
        return row.payload.get("question"), list(row.payload.get("choices") or [])

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

    async def inbound_details(self, message_id: int) -> tuple[str | None, list[AttachmentRef]]:
        """A customer message's sender name and files, for its mirror in the desk."""
        async with self._db.engine.connect() as conn:
            name = (await conn.execute(select(messages.c.author_name).where(
                messages.c.id == message_id, messages.c.direction == Direction.IN.value))).scalar()
            rows = await conn.execute(select(attachments).where(attachments.c.message_id == message_id)
                                      .order_by(attachments.c.id))
            return name, [AttachmentRef(r.filename, r.content_type, r.size, r.sha256, r.inline) for r in rows]

    def now(self) -> datetime:
        return self._clock.now()
