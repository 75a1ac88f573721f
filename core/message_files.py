"""Messages' files, both ways: what a customer sent (an email attachment, a Telegram photo, a
web chat upload) and, later, what an agent sends. One ``attachments`` row per file of a
message, the bytes in the attachment store by sha256 (core/attachments.py).

The port adapters use for them: they never read the tables themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, select

from posventa.core.attachments import AttachmentStore, IncomingFile
from posventa.core.domain import Author, ChannelName
from posventa.core.persistence import Database
from posventa.core.persistence.schema import attachments, messages


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: int
    message_id: int
    filename: str
    content_type: str
    size: int
    sha256: str


_COLUMNS = (attachments.c.id, attachments.c.message_id, attachments.c.filename, attachments.c.content_type,
            attachments.c.size, attachments.c.sha256)


def _file(row) -> StoredFile:
    return StoredFile(row.id, row.message_id, row.filename, row.content_type, row.size, row.sha256)


class MessageFiles:
    def __init__(self, *, db: Database, store: AttachmentStore) -> None:
        self._db = db
        self._store = store

    def receive(self) -> IncomingFile:
        """A file to write as it arrives (see ``AttachmentStore.receive``)."""
        return self._store.receive()

    def path(self, file: StoredFile) -> Path:
        return self._store.path_for(file.sha256)

    async def of_message(self, message_id: int) -> list[StoredFile]:
        return (await self.of_messages([message_id])).get(message_id, [])

    async def of_messages(self, message_ids: Sequence[int]) -> dict[int, list[StoredFile]]:
        """The files of these messages (not the images inside an email's body), by message id."""
        by_message: dict[int, list[StoredFile]] = {}
        if not message_ids:
            return by_message
        async with self._db.reading() as conn:
            rows = await conn.execute(select(*_COLUMNS).where(attachments.c.message_id.in_(list(message_ids)),
                                                              attachments.c.inline.is_(False))
                                      .order_by(attachments.c.id))
            for row in rows:
                by_message.setdefault(row.message_id, []).append(_file(row))
        return by_message

    async def in_conversation(self, attachment_id: int, *, contact_id: int, channel: ChannelName) -> StoredFile | None:
        """The file if it belongs to the contact's conversation on ``channel`` (their own
        files and the agents' files to them, never an internal note's); else None."""
        async with self._db.reading() as conn:
            row = (await conn.execute(
                select(*_COLUMNS).join(messages, messages.c.id == attachments.c.message_id)
                .where(attachments.c.id == attachment_id,
                       and_(messages.c.contact_id == contact_id, messages.c.channel == channel.value,
                            messages.c.author != Author.NOTE.value)))).first()
        return None if row is None else _file(row)
