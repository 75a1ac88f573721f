"""Read-only answers a chat adapter needs about a customer and their cases.

A core port: the Telegram bot asks these instead of querying core's tables. Which case
a message joins is not here: that is ``Inbox.open_case_of`` (``core.case_threading``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from posventa.core.domain import STALE_AUTHORS, Activity, AttachmentRef, ChannelName, Direction
from posventa.core.outgoing import Recipient
from posventa.core.persistence import Database
from posventa.core.persistence.schema import attachments, cases, contact_identities, messages, outbox


@dataclass(frozen=True, slots=True)
class CaseLine:
    number: int
    title: str
    activity: str


@dataclass(frozen=True, slots=True)
class DeskMirror:
    """A copy of one of the case's messages queued for the agents' desk: a customer's
    message (``message_id``) or an agent's reply written elsewhere (queued in the same
    commit as the reply, at ``queued_at``)."""

    queued_at: datetime
    status: str
    #: The desk's id of the sent copy (``Channel.send``'s answer), once sent.
    external_id: str | None
    #: The customer message it copies; None for an agent's reply.
    message_id: int | None


class CaseLookup:
    def __init__(self, *, db: Database) -> None:
        self._db = db

    async def recipient(self, channel: ChannelName, address: str) -> Recipient:
        """The customer's identity on ``channel`` as an outbox recipient (ids None before
        their first contact)."""
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(contact_identities.c.id, contact_identities.c.contact_id).where(
                contact_identities.c.channel == channel.value, contact_identities.c.address == address))).first()
        if row is None:
            return Recipient(channel, address)
        return Recipient(channel, address, row.id, row.contact_id)

    async def cases_of(self, contact_id: int, *, limit: int = 10) -> list[CaseLine]:
        """The contact's cases, open ones first, newest first."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(cases.c.id, cases.c.title, cases.c.activity)
                .where(cases.c.contact_id == contact_id)
                .order_by((cases.c.activity == Activity.CLOSED.value), cases.c.id.desc())
                .limit(limit))
            return [CaseLine(r.id, r.title, r.activity) for r in rows]

    async def sent_choices(self, channel: ChannelName, recipient: str,
                           external_id: str) -> tuple[str | None, list[dict[str, Any]]]:
        """The question and choices of buttons we sent, from the outbox item that sent them
        (``external_id``: the transport's id of the sent message)."""
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(
                select(outbox.c.payload).where(
                    outbox.c.channel == channel.value, outbox.c.recipient == recipient,
                    outbox.c.external_id == external_id)
                .order_by(outbox.c.id.desc()).limit(1))).first()
        if row is None or not isinstance(row.payload, dict):
            return None, []
        return row.payload.get("question"), list(row.payload.get("choices") or [])

    async def inbound_details(self, message_id: int) -> tuple[str | None, list[AttachmentRef]]:
        """A customer message's sender name and files."""
        async with self._db.engine.connect() as conn:
            name = (await conn.execute(select(messages.c.author_name).where(
                messages.c.id == message_id, messages.c.direction == Direction.IN.value))).scalar()
            rows = await conn.execute(select(attachments).where(attachments.c.message_id == message_id)
                                      .order_by(attachments.c.id))
            return name, [AttachmentRef(r.filename, r.content_type, r.size, r.sha256, r.inline) for r in rows]

    # --- what the agents' desk has shown of a case (the desk's stale-reply check) ------------

    async def desk_mirrors(self, case_id: int, *, limit: int = 50) -> list[DeskMirror]:
        """The case's messages as queued for the agents' desk, newest first."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(outbox.c.created_at, outbox.c.status, outbox.c.external_id, outbox.c.payload)
                .where(outbox.c.case_id == case_id, outbox.c.channel == ChannelName.DESK.value,
                       outbox.c.kind == "desk")
                .order_by(outbox.c.id.desc()).limit(limit))
            out = []
            for r in rows:
                extra = r.payload.get("extra") if isinstance(r.payload, dict) else None
                mid = extra.get("message_id") if isinstance(extra, dict) else None
                out.append(DeskMirror(r.created_at, r.status, r.external_id,
                                      int(mid) if isinstance(mid, str) and mid.isdigit() else None))
            return out

    async def newest_message(self, case_id: int, *, below_id: int | None = None,
                             before: datetime | None = None) -> int:
        """The newest customer message or agent reply of the case (0: none), only among
        those with an id below ``below_id`` and stored before ``before`` when given."""
        query = select(func.max(messages.c.id)).where(messages.c.case_id == case_id,
                                                      messages.c.author.in_(STALE_AUTHORS))
        if below_id is not None:
            query = query.where(messages.c.id < below_id)
        if before is not None:
            query = query.where(messages.c.created_at < before)
        async with self._db.engine.connect() as conn:
            return (await conn.execute(query)).scalar() or 0
