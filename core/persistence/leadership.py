"""One process out of many does a job: a PostgreSQL session-level advisory lock.

Some work must have exactly one doer among the ``serve`` processes sharing a database:
Telegram answers 409 Conflict to a second ``getUpdates``. ``AdvisoryLeadership`` holds
``pg_try_advisory_lock(key)`` on a dedicated connection kept open for as long as this
process leads. The lock belongs to that session, so when the process dies — even by
``kill -9`` — the kernel closes the socket, PostgreSQL ends the session and releases the
lock, and the next ``is_leader()`` elsewhere takes it.

``is_leader()`` is cheap enough to ask before every unit of work: it re-checks the
connection with a ping at most every ``check_seconds``. Between a silent loss and that
ping two processes may briefly both believe they lead, so the job itself must tolerate an
overlap (Telegram's 409 plus the update dedupe do).

With SQLite (one process owns the file) there is nobody to compete with: ``always``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from posventa.core.persistence.database import Database
from posventa.core.persistence.notify import close_raw, connect_raw

log = logging.getLogger(__name__)

IsLeader = Callable[[], Awaitable[bool]]


async def always() -> bool:
    return True


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (the type pg_try_advisory_lock takes)."""
    return int.from_bytes(hashlib.blake2b(f"posventa:{name}".encode(), digest_size=8).digest(), "big", signed=True)


class AdvisoryLeadership:
    """Leads while it holds the advisory lock named ``name``; a service component."""

    def __init__(self, *, db: Database, name: str, check_seconds: float = 5.0, retry_seconds: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if db.is_sqlite:
            raise ValueError("advisory locks need PostgreSQL; with SQLite every process is the only one")
        self._db = db
        self.name = name
        self.key = lock_key(name)
        self._check = check_seconds
        self._retry = retry_seconds
        self._now = monotonic
        self._conn: Any = None
        self._held = False
        self._verified_at = 0.0
        self._next_try = 0.0
        self._lock = asyncio.Lock()
        self._closed = False
        #: How many times this process took the lead (a metric; tests read it too).
        self.acquired = 0

    @property
    def held(self) -> bool:
        """What the last check found (no I/O)."""
        return self._held

    async def is_leader(self) -> bool:
        async with self._lock:
            if self._closed:
                return False
            now = self._now()
            if self._held:
                if now - self._verified_at < self._check:
                    return True
                if await self._alive():
                    self._verified_at = now
                    return True
                log.warning("leadership %s: lost the connection holding the lock; another process may lead now",
                            self.name)
                await self._drop()
            if now < self._next_try:
                return False
            self._next_try = now + self._retry
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await connect_raw(self._db, timeout=self._retry + 3)
                got = await asyncio.wait_for(self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key),
                                             timeout=self._retry + 3)
            except Exception as exc:  # the database is away: nobody here leads until it is back
                log.info("leadership %s: cannot reach the database (%s)", self.name, type(exc).__name__)
                await self._drop()
                return False
            if got:
                self._held = True
                self._verified_at = now
                self.acquired += 1
                log.info("leadership %s: this process leads (advisory lock %d)", self.name, self.key)
            return bool(got)

    async def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=self._check)
            return True
        except Exception:
            return False

    async def _drop(self) -> None:
        self._held = False
        conn, self._conn = self._conn, None
        await close_raw(conn)

    async def start(self) -> None:
        self._closed = False

    async def stop(self) -> None:
        """Give up the lead now (closing the session releases the lock), so another
        process takes over at its next check instead of after a timeout."""
        async with self._lock:
            self._closed = True
            if self._held:
                log.info("leadership %s: released", self.name)
            await self._drop()
