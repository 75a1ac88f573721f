"""Web chat sessions: who a websocket speaks for.

A visitor holds a bearer token (256 random bits, kept in the browser's localStorage);
we store only its sha256, so a database leak hands out no sessions. Each session gets
its own contact and a web chat identity whose address is the session's *public* id:
that is the ``sender`` of its messages and the ``recipient`` of its replies, and it is
useless without the token. The sessions are kept by core's ``ChatSessions``
(``core.chat_sessions``, which creates the contact through the one contact-creation
port); this module makes and hashes the tokens.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from datetime import timedelta

from posventa.core import Database
from posventa.core.chat_sessions import ChatSession, ChatSessions
from posventa.core.ports import Clock

TOKEN_BYTES = 32


#: A visitor's session as the web chat uses it (the time zone is its connection's).
Session = ChatSession


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore:
    def __init__(self, *, db: Database, clock: Clock) -> None:
        self._sessions = ChatSessions(db=db, clock=clock)

    async def create(self, *, language: str | None, name: str | None, email: str | None) -> tuple[str, Session]:
        """A new visitor: contact, identity and session in one transaction. Returns the token."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        created = await self._sessions.create(token_hash=hash_token(token), public_id="wc-" + secrets.token_urlsafe(16),
                                              language=language, name=name, email=email)
        return token, created

    async def resume(self, token: str, *, language: str | None, name: str | None, email: str | None) -> Session | None:
        """The session for ``token``, or None. Fills in a name/email given later (a
        pre-chat form) without overwriting what the visitor said before."""
        return await self._sessions.resume(hash_token(token), language=language, name=name, email=email)

    async def find(self, token: str) -> Session | None:
        """The session for ``token``, read only (an upload's credential check)."""
        return await self._sessions.find(hash_token(token))

    async def touch(self, session_id: int) -> None:
        await self._sessions.touch(session_id)

    async def sweep_abandoned(self, *, older_than: timedelta, keep: Collection[str] = (), limit: int = 500) -> int:
        """Delete sessions nobody used (``ChatSessions.sweep_abandoned``)."""
        return await self._sessions.sweep_abandoned(older_than=older_than, keep=keep, limit=limit)
