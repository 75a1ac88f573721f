"""A session's conversation as the widget shows it, read from ``messages``.

Every web chat message, both ways, is a ``messages`` row of the session's contact on
channel ``webchat`` (outbound ones are written by ``Outgoing.add`` with their outbox
item). So a reconnect replays from the database, and nothing depends on the socket that
happened to be open when a reply was committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from posventa.core.domain import Author, ChannelName, Direction
from posventa.core.outbox import Outbox
from posventa.core.persistence import Database
from posventa.core.persistence.schema import attachments, messages, outbox
from posventa.intake.webchat import protocol
from posventa.intake.webchat.sessions import Session, reading

#: Outbox states of a web chat push that has not reached the visitor yet.
UNDELIVERED = Outbox.UNDELIVERED

_COLS = (messages.c.id, messages.c.direction, messages.c.author, messages.c.text, messages.c.extra,
         messages.c.external_id)


def sender_of(direction: str, author: str) -> str:
    if direction == Direction.IN.value:
        return "customer"
    return "agent" if author == Author.AGENT.value else "bot"


def frame_of(row: Any, session: Session, files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    client_id = None
    if row.direction == Direction.IN.value and row.external_id:
        prefix, _, rest = row.external_id.partition(":")
        client_id = rest if prefix == session.public_id and rest else None
    return protocol.server_message(row.id, sender=sender_of(row.direction, row.author), text=row.text,
                                   extra=row.extra, client_id=client_id, attachments=files)


async def files_of(conn: Any, message_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """The attachments of these messages, as frames carry them, by message id."""
    by_message: dict[int, list[dict[str, Any]]] = {}
    if not message_ids:
        return by_message
    rows = await conn.execute(select(attachments.c.id, attachments.c.message_id, attachments.c.filename,
                                     attachments.c.content_type, attachments.c.size)
                              .where(attachments.c.message_id.in_(list(message_ids)),
                                     attachments.c.inline.is_(False))
                              .order_by(attachments.c.id))
    for r in rows:
        by_message.setdefault(r.message_id, []).append(protocol.attachment(r.id, r.filename, r.content_type, r.size))
    return by_message


class History:
    def __init__(self, *, db: Database, limit: int) -> None:
        self._db = db
        self._outbox = Outbox(db=db)
        self._limit = limit

    async def replay(self, session: Session, last_seen: int | None, *, now: datetime,
                     mark_delivered: bool) -> list[dict[str, Any]]:
        """Frames for what the client has not seen: every message after ``last_seen``
        (the newest ``limit`` of the whole history when None), plus any reply still
        undelivered in the outbox even if its id is older (ids can commit out of order).

        With ``mark_delivered`` those outbox items are marked sent: the visitor has them
        now. The caller passes it only when this is the session's one open socket; with
        other tabs open the outbox must still push to them (this tab drops the copy)."""
        mine = and_(messages.c.contact_id == session.contact_id, messages.c.channel == ChannelName.WEBCHAT.value,
                    messages.c.author != Author.NOTE.value)
        async with reading(self._db) as conn:
            pending = (await conn.execute(
                select(outbox.c.id, outbox.c.message_id).where(
                    outbox.c.channel == ChannelName.WEBCHAT.value, outbox.c.recipient == session.public_id,
                    outbox.c.status.in_(UNDELIVERED), outbox.c.message_id.is_not(None))
                .order_by(outbox.c.id).limit(self._limit))).all()
            pending_ids = [p.message_id for p in pending]
            if last_seen is None:
                rows = list(reversed((await conn.execute(
                    select(*_COLS).where(mine).order_by(messages.c.id.desc()).limit(self._limit))).all()))
            else:
                cond = messages.c.id > last_seen
                if pending_ids:
                    cond = or_(cond, messages.c.id.in_(pending_ids))
                rows = (await conn.execute(
                    select(*_COLS).where(mine, cond).order_by(messages.c.id).limit(self._limit))).all()
            files = await files_of(conn, [r.id for r in rows])
        shown = {r.id for r in rows}
        delivered = [p.id for p in pending if p.message_id in shown]
        if delivered and mark_delivered:
            await self._outbox.mark_delivered(delivered, now=now, external_id="webchat:replay")
        return [frame_of(r, session, files.get(r.id)) for r in rows]

    async def choice_label(self, session: Session, question: str, value: str) -> str | None:
        """The label of the button the visitor pressed, from the message that asked, so the
        history reads "Reclamo" rather than "complaint". None if we never asked it."""
        async with reading(self._db) as conn:
            rows = (await conn.execute(
                select(messages.c.extra).where(
                    messages.c.contact_id == session.contact_id, messages.c.channel == ChannelName.WEBCHAT.value,
                    messages.c.direction == Direction.OUT.value, messages.c.extra.is_not(None))
                .order_by(messages.c.id.desc()).limit(50))).all()
        for (extra,) in rows:
            if isinstance(extra, dict) and extra.get("question") == question:
                for choice in extra.get("choices") or ():
                    if isinstance(choice, dict) and str(choice.get("value")) == value:
                        return str(choice.get("label") or value)
                return None
        return None
