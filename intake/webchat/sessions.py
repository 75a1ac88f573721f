"""Web chat sessions: who a websocket speaks for.

A visitor holds a bearer token (256 random bits, kept in the browser's localStorage);
we store only its sha256, so a database leak hands out no sessions. Each session gets
its own contact and a web chat identity whose address is the session's *public* id:
that is the ``sender`` of its messages and the ``recipient`` of its replies, and it is
useless without the token.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.contacts.identities import create_contact, reindex
from posventa.core.domain import ChannelName
from posventa.core.errors import StorageUnavailable
from posventa.core.persistence import Database
from posventa.core.persistence.schema import cases, contact_identities, contacts, messages, sales, webchat_sessions
from posventa.core.ports import Clock

TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    public_id: str
    contact_id: int
    language: str | None
    name: str | None
    email: str | None
    #: The browser's time zone this connection said in its hello (not stored).
    timezone: str | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@contextlib.asynccontextmanager
async def reading(db: Database) -> AsyncIterator[AsyncConnection]:
    """A read-only connection (no write lock on SQLite) whose failures become
    ``StorageUnavailable``, like ``Database.transaction`` does for writes."""
    try:
        async with db.engine.connect() as conn:
            yield conn
    except (OperationalError, DBAPIError, OSError, ConnectionError) as exc:
        raise StorageUnavailable(type(exc).__name__) from exc


class SessionStore:
    def __init__(self, *, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, *, language: str | None, name: str | None, email: str | None) -> tuple[str, Session]:
        """A new visitor: contact, identity and session in one transaction. Returns the token."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        public_id = "wc-" + secrets.token_urlsafe(16)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            # The email is what the visitor typed, unverified: shown to agents, used for the
            # reply-by-email fallback and for duplicate suggestions, but never an email
            # *identity* (that would route someone else's mail, and their cases, into this chat).
            contact_id = await create_contact(conn, now=now, name=name, language=language, typed_email=email,
                                              identities=[((ChannelName.WEBCHAT.value, public_id), True)])
            session_id = (await conn.execute(insert(webchat_sessions).values(
                public_id=public_id, token_hash=hash_token(token), contact_id=contact_id, language=language,
                name=name, email=email, created_at=now, last_seen_at=now,
            ).returning(webchat_sessions.c.id))).scalar_one()
        return token, Session(session_id, public_id, contact_id, language, name, email)

    async def resume(self, token: str, *, language: str | None, name: str | None, email: str | None) -> Session | None:
        """The session for ``token``, or None. Fills in a name/email given later (a
        pre-chat form) without overwriting what the visitor said before."""
        async with reading(self._db) as conn:
            row = (await conn.execute(select(webchat_sessions).where(
                webchat_sessions.c.token_hash == hash_token(token)))).first()
        if row is None:
            return None
        values: dict[str, object] = {"last_seen_at": self._clock.now()}
        if language and language != row.language:
            values["language"] = language
        if name and not row.name:
            values["name"] = name
        if email and not row.email:
            values["email"] = email
        async with self._db.transaction() as conn:
            await conn.execute(update(webchat_sessions).where(webchat_sessions.c.id == row.id).values(**values))
            contact_values = {k: v for k, v in values.items() if k in ("name", "email", "language")}
            if contact_values:
                await conn.execute(update(contacts).where(contacts.c.id == row.contact_id).values(**contact_values))
                if "name" in contact_values:
                    await reindex(conn, [row.contact_id])
        return Session(row.id, row.public_id, row.contact_id, values.get("language", row.language),  # type: ignore[arg-type]
                       values.get("name", row.name), values.get("email", row.email))  # type: ignore[arg-type]

    async def find(self, token: str) -> Session | None:
        """The session for ``token``, read only (an upload's credential check)."""
        async with reading(self._db) as conn:
            row = (await conn.execute(select(webchat_sessions).where(
                webchat_sessions.c.token_hash == hash_token(token)))).first()
        if row is None:
            return None
        return Session(row.id, row.public_id, row.contact_id, row.language, row.name, row.email)

    async def touch(self, session_id: int) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(update(webchat_sessions).where(webchat_sessions.c.id == session_id)
                               .values(last_seen_at=self._clock.now()))

    async def sweep_abandoned(self, *, older_than: timedelta, keep: Collection[str] = (), limit: int = 500) -> int:
        """Delete sessions nobody used: never wrote a message, not seen for ``older_than``.
        Their contacts go too (the identity and the session cascade). Sessions with any
        message stay: their history is the customer's."""
        cutoff: datetime = self._clock.now() - older_than
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
