"""Web chat visitors' sessions (``webchat_sessions``): who a chat speaks for.

Each session has its own contact and a web chat identity whose address is the session's
public id. The table is core's because core reads it: a contact's export and erasure
(``core.contacts.privacy``), a merge moving sessions to the contact it keeps
(``core.contacts.merge``) and the email fallback's address (``core.reply_fallback``). The
web chat reaches it only through ``ChatSessions``, a core port; the bearer token is the
web chat's (it hands in the token's hash, never the token).

A new visitor's contact and identity come from ``core.contacts.identities``, the one
place contacts are created, in the session's own transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, insert, select, update

from posventa.core.contacts.identities import create_contact, reindex
from posventa.core.domain import ChannelName, Direction
from posventa.core.message_files import StoredFile, files_of
from posventa.core.persistence import Database
from posventa.core.persistence.schema import cases, contact_identities, contacts, messages, sales, webchat_sessions
from posventa.core.ports import Clock

#: Sessions marked seen per transaction.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ChatSession:
    id: int
    public_id: str
    contact_id: int
    language: str | None
    name: str | None
    email: str | None
    #: The browser's time zone a connection of this session said in its hello (never stored).
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class SessionMessage:
    """An agent's or the bot's message to a session's contact, with the session it is for."""

    id: int
    public_id: str
    direction: str
    author: str
    text: str
    extra: Any
    #: Its files (an agent's attachments).
    files: tuple[StoredFile, ...] = ()


def _session(row: Any) -> ChatSession:
    return ChatSession(row.id, row.public_id, row.contact_id, row.language, row.name, row.email)


class ChatSessions:
    def __init__(self, *, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, *, token_hash: str, public_id: str, language: str | None, name: str | None,
                     email: str | None) -> ChatSession:
        """A new visitor: contact, identity and session in one transaction."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            # The email is what the visitor typed, unverified: shown to agents, used for the
            # reply-by-email fallback and for duplicate suggestions, but never an email
            # *identity* (that would route someone else's mail, and their cases, into this chat).
            contact_id = await create_contact(conn, now=now, name=name, language=language, typed_email=email,
                                              identities=[((ChannelName.WEBCHAT.value, public_id), True)])
            session_id = (await conn.execute(insert(webchat_sessions).values(
                public_id=public_id, token_hash=token_hash, contact_id=contact_id, language=language,
                name=name, email=email, created_at=now, last_seen_at=now,
            ).returning(webchat_sessions.c.id))).scalar_one()
        return ChatSession(session_id, public_id, contact_id, language, name, email)

    async def resume(self, token_hash: str, *, language: str | None, name: str | None,
                     email: str | None) -> ChatSession | None:
        """The session, seen now, or None. Fills in a name/email given later (a pre-chat
        form) without overwriting what the visitor said before; the contact follows."""
        found = await self.find(token_hash)
        if found is None:
            return None
        values: dict[str, Any] = {"last_seen_at": self._clock.now()}
        if language and language != found.language:
            values["language"] = language
        if name and not found.name:
            values["name"] = name
        if email and not found.email:
            values["email"] = email
        async with self._db.transaction() as conn:
            await conn.execute(update(webchat_sessions).where(webchat_sessions.c.id == found.id).values(**values))
            contact_values = {k: v for k, v in values.items() if k in ("name", "email", "language")}
            if contact_values:
                await conn.execute(update(contacts).where(contacts.c.id == found.contact_id).values(**contact_values))
                if "name" in contact_values:
                    await reindex(conn, [found.contact_id])
        return ChatSession(found.id, found.public_id, found.contact_id, values.get("language", found.language),
                           values.get("name", found.name), values.get("email", found.email))

    async def find(self, token_hash: str) -> ChatSession | None:
        """The session with this token, read only."""
        async with self._db.reading() as conn:
            row = (await conn.execute(select(webchat_sessions).where(
                webchat_sessions.c.token_hash == token_hash))).first()
        return None if row is None else _session(row)

    async def touch(self, session_id: int) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(update(webchat_sessions).where(webchat_sessions.c.id == session_id)
                               .values(last_seen_at=self._clock.now()))

    async def mark_seen(self, public_ids: Collection[str]) -> None:
        """These sessions are connected now (a process's heartbeat for its open sockets)."""
        ids = sorted(public_ids)
        now = self._clock.now()
        for start in range(0, len(ids), _CHUNK):
            async with self._db.transaction() as conn:
                await conn.execute(update(webchat_sessions)
                                   .where(webchat_sessions.c.public_id.in_(ids[start:start + _CHUNK]))
                                   .values(last_seen_at=now))

    async def seen_since(self, public_id: str, since: datetime) -> bool:
        async with self._db.reading() as conn:
            seen = (await conn.execute(select(webchat_sessions.c.last_seen_at)
                                       .where(webchat_sessions.c.public_id == public_id))).scalar()
        return seen is not None and seen >= since

    async def messages_to(self, message_ids: Sequence[int]) -> list[SessionMessage]:
        """The outbound web chat messages among ``message_ids``, once for each session of
        their contact (a contact with two sessions gets two)."""
        async with self._db.reading() as conn:
            rows = (await conn.execute(
                select(messages.c.id, webchat_sessions.c.public_id, messages.c.direction, messages.c.author,
                       messages.c.text, messages.c.extra)
                .join(webchat_sessions, webchat_sessions.c.contact_id == messages.c.contact_id)
                .where(messages.c.id.in_(list(message_ids)), messages.c.channel == ChannelName.WEBCHAT.value,
                       messages.c.direction == Direction.OUT.value))).all()
            files = await files_of(conn, sorted({r.id for r in rows}))
        return [SessionMessage(r.id, r.public_id, r.direction, r.author, r.text, r.extra, tuple(files.get(r.id, ())))
                for r in rows]

    async def sweep_abandoned(self, *, older_than: timedelta, keep: Collection[str] = (), limit: int = 500) -> int:
        """Delete sessions nobody used: never wrote a message, not seen for ``older_than``.
        Their contacts go too (the identity and the session cascade). Sessions with any
        message stay: their history is the customer's."""
        cutoff = self._clock.now() - older_than
        async with self._db.transaction() as conn:
            rows = (await conn.execute(
                select(webchat_sessions.c.contact_id, webchat_sessions.c.public_id)
                .where(webchat_sessions.c.last_seen_at < cutoff,
                       ~exists().where(messages.c.contact_id == webchat_sessions.c.contact_id),
                       ~exists().where(cases.c.contact_id == webchat_sessions.c.contact_id),
                       ~exists().where(sales.c.contact_id == webchat_sessions.c.contact_id))
                .limit(limit))).all()
            ids = [r.contact_id for r in rows if r.public_id not in keep]
            if not ids:
                return 0
            await conn.execute(delete(webchat_sessions).where(webchat_sessions.c.contact_id.in_(ids)))
            await conn.execute(delete(contact_identities).where(and_(
                contact_identities.c.contact_id.in_(ids), contact_identities.c.channel == ChannelName.WEBCHAT.value)))
            await conn.execute(delete(contacts).where(contacts.c.id.in_(ids)))
        return len(ids)
