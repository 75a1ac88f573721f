"""A contact's conversation on a chat channel, as the chat shows it (the web chat's replay).

Every chat message, both ways, is a ``messages`` row of the contact on that channel
(outbound ones are written by ``Outgoing.add`` with their outbox item), so a reconnect
replays from here and nothing depends on the socket that happened to be open when a
reply was committed. A core port: the web chat reads its history through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select

from posventa.core.domain import Author, ChannelName, Direction
from posventa.core.message_files import StoredFile, files_of
from posventa.core.outbox import Outbox
from posventa.core.persistence import Database
from posventa.core.persistence.schema import messages, outbox

_COLUMNS = (messages.c.id, messages.c.direction, messages.c.author, messages.c.text, messages.c.extra,
            messages.c.external_id)


@dataclass(frozen=True, slots=True)
class ChatLine:
    id: int
    direction: str
    author: str
    text: str
    extra: Any
    external_id: str | None
    #: Its files (not the images inside an email's body).
    files: tuple[StoredFile, ...] = ()


@dataclass(frozen=True, slots=True)
class Replay:
    lines: list[ChatLine]
    #: The outbox items of replies among ``lines`` that had not reached the visitor yet.
    undelivered: list[int]


class ChatHistory:
    def __init__(self, *, db: Database) -> None:
        self._db = db

    async def replay(self, *, contact_id: int, channel: ChannelName, recipient: str, last_seen: int | None,
                     limit: int) -> Replay:
        """What the client has not seen: every message after ``last_seen`` (the newest
        ``limit`` of the whole history when None), plus any reply to ``recipient`` still
        undelivered in the outbox even if its id is older (ids can commit out of order).
        Internal notes never."""
        mine = and_(messages.c.contact_id == contact_id, messages.c.channel == channel.value,
                    messages.c.author != Author.NOTE.value)
        async with self._db.reading() as conn:
            pending = (await conn.execute(
                select(outbox.c.id, outbox.c.message_id).where(
                    outbox.c.channel == channel.value, outbox.c.recipient == recipient,
                    outbox.c.status.in_(Outbox.UNDELIVERED), outbox.c.message_id.is_not(None))
                .order_by(outbox.c.id).limit(limit))).all()
            pending_ids = [p.message_id for p in pending]
            if last_seen is None:
                rows = list(reversed((await conn.execute(
                    select(*_COLUMNS).where(mine).order_by(messages.c.id.desc()).limit(limit))).all()))
            else:
                cond = messages.c.id > last_seen
                if pending_ids:
                    cond = or_(cond, messages.c.id.in_(pending_ids))
                rows = (await conn.execute(
                    select(*_COLUMNS).where(mine, cond).order_by(messages.c.id).limit(limit))).all()
            files = await files_of(conn, [r.id for r in rows])
        shown = {r.id for r in rows}
        return Replay([ChatLine(r.id, r.direction, r.author, r.text, r.extra, r.external_id, tuple(files.get(r.id, ())))
                       for r in rows], [p.id for p in pending if p.message_id in shown])

    async def asked(self, *, contact_id: int, channel: ChannelName, limit: int = 50) -> list[Any]:
        """The ``extra`` of the newest messages to the contact that carry one (questions,
        choices, suggestions), newest first."""
        async with self._db.reading() as conn:
            rows = (await conn.execute(
                select(messages.c.extra).where(
                    messages.c.contact_id == contact_id, messages.c.channel == channel.value,
                    messages.c.direction == Direction.OUT.value, messages.c.extra.is_not(None))
                .order_by(messages.c.id.desc()).limit(limit))).all()
        return [extra for (extra,) in rows]
