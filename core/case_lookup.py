"""Read-only answers a chat adapter needs about a customer and their cases.

A core port: the Telegram bot asks these instead of querying core's tables. Which case
a message joins is not here: that is ``Inbox.open_case_of`` (``core.case_threading``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from posventa.core.domain import Activity, AttachmentRef, ChannelName, Direction
from posventa.core.outgoing import Recipient
from posventa.core.persistence import Database
from posventa.core.persistence.schema import attachments, cases, contact_identities, messages, outbox


@dataclass(frozen=True, slots=True)
class CaseLine:
    number: int
    title: str
    activity: str


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
