"""Messages' files, both ways: what a customer sent (an email attachment, a Telegram photo, a
web chat upload) and what an agent sends with a reply. One ``attachments`` row per file of a
message, the bytes in the attachment store by sha256 (core/attachments.py).

The port adapters use for them: they never read the tables themselves. ``take`` is the
one door for a file someone sends us through a form (the API, the console, a document in
the desk): the upload rule (core/uploads.py, ``[webchat] max_upload_bytes`` and
``upload_types``) decides, as the file arrives, and only a file it accepts is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.attachments import AttachmentStore, IncomingFile, safe_filename
from posventa.core.domain import AttachmentRef, Author, ChannelName, OutgoingFile
from posventa.core.uploads import TOO_LARGE, UploadCheck, UploadPolicy, UploadRefused, matching_name
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


async def files_of(conn: AsyncConnection, message_ids: Sequence[int]) -> dict[int, list[StoredFile]]:
    """``MessageFiles.of_messages`` on a connection a core port already holds."""
    by_message: dict[int, list[StoredFile]] = {}
    if not message_ids:
        return by_message
    rows = await conn.execute(select(*_COLUMNS).where(attachments.c.message_id.in_(list(message_ids)),
                                                      attachments.c.inline.is_(False))
                              .order_by(attachments.c.id))
    for row in rows:
        by_message.setdefault(row.message_id, []).append(_file(row))
    return by_message


class MessageFiles:
    def __init__(self, *, db: Database, store: AttachmentStore, policy: UploadPolicy) -> None:
        self._db = db
        self._store = store
        self.policy = policy

    def receive(self) -> IncomingFile:
        """A file to write as it arrives (see ``AttachmentStore.receive``)."""
        return self._store.receive()

    async def take(self, chunks: AsyncIterable[bytes], *, filename: str | None, field: str,
                   declared_size: int | None = None) -> AttachmentRef:
        """One file, read chunk by chunk as it arrives: checked by the upload rule (size,
        then type by content) and kept under its hash (fsynced, deduplicated). A refused
        file raises ``UploadRefused`` naming ``field`` and the file, and nothing is kept.
        A kept file that no message ends up using is an orphan the store tolerates (the
        same bytes sent again are the same file)."""
        name = safe_filename(filename, default="file")
        check = UploadCheck(self.policy)
        incoming: IncomingFile | None = None
        try:
            if declared_size is not None and declared_size > self.policy.max_bytes:
                raise UploadRefused(TOO_LARGE, f"the file is larger than {self.policy.max_bytes} bytes")
            incoming = self._store.receive()
            async for chunk in chunks:
                check.feed(chunk)
                await incoming.write(chunk)
            content_type = check.finish()
        except UploadRefused as refused:
            if incoming is not None:
                incoming.discard()
            raise refused.naming(field, name) from None
        except BaseException:
            if incoming is not None:
                incoming.discard()
            raise
        return await incoming.keep(filename=matching_name(name, content_type), content_type=content_type)

    def path(self, file: StoredFile | OutgoingFile) -> Path:
        return self._store.path_for(file.sha256)

    async def read(self, file: StoredFile | OutgoingFile) -> bytes:
        """The file's bytes (``FileNotFoundError`` when the store lost it, or a privacy
        erasure removed it)."""
        return await asyncio.to_thread(self.path(file).read_bytes)

    async def get(self, attachment_id: int) -> StoredFile | None:
        """Any message's file by id, an email's inline images too (the API's and the console's
        downloads: a token or an agent may read every case)."""
        async with self._db.reading() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(attachments.c.id == attachment_id))).first()
        return None if row is None else _file(row)

    async def of_message(self, message_id: int) -> list[StoredFile]:
        return (await self.of_messages([message_id])).get(message_id, [])

    async def of_messages(self, message_ids: Sequence[int]) -> dict[int, list[StoredFile]]:
        """The files of these messages (not the images inside an email's body), by message id."""
        if not message_ids:
            return {}
        async with self._db.reading() as conn:
            return await files_of(conn, message_ids)

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
