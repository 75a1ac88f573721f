"""aiosqlite with one trip to its thread per statement, instead of four.

aiosqlite runs every sqlite3 call on the connection's own thread, and SQLAlchemy's
adapter makes four such calls per statement: create a cursor, execute, fetch the rows,
close the cursor. Each trip is a queue put, a thread wake-up and a callback back on the
event loop, where the result waits for the loop's current round; under load, a group
commit of a dozen statements spent most of its time in those waits, with both the loop
and the database idle.

``connect`` builds an aiosqlite connection whose cursors do the sqlite3 work of one
statement in a single trip: create the sqlite3 cursor (the first time), execute, and
fetch every row the statement returns. ``fetch*`` then read those rows, and ``close``
has nothing left to do on the thread (the statement already ran to its end; the sqlite3
cursor is freed with ours). A rollback with no transaction open takes no trip either.

``BEGIN`` takes no trip of its own: ``defer_begin`` leaves it with the connection, and the
transaction's first statement runs it in its own trip (a transaction that runs nothing
never begins, and its commit or rollback takes no trip). Under load each trip waits for
the event loop's current round, and the BEGIN IMMEDIATE of an inbox batch waited 1 to 5
ms for its answer while the batch could not go on.

Everything else (commit, the connection's lifecycle) is aiosqlite's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiosqlite

__all__ = ["connect", "defer_begin"]


def connect(database: str, **kwargs: Any) -> aiosqlite.Connection:
    """Like ``aiosqlite.connect``; awaiting the result starts the connection's thread."""

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, **kwargs)

    return _Connection(connector, 64)


def defer_begin(connection: Any, statement: str) -> None:
    """Run ``statement`` (``BEGIN`` or ``BEGIN IMMEDIATE``) before the next statement on
    ``connection``, a connection from ``connect`` or SQLAlchemy's adapter around one."""
    target = getattr(connection, "_connection", connection)
    if not isinstance(target, _Connection):
        raise TypeError(f"not a connection of ours: {type(connection).__name__}")
    target.pending_begin = statement


def run_before_pending_begin(connection: Any, run: Callable[[], object]) -> None:
    """Call ``run`` (which executes statements on ``connection``) with the transaction's
    deferred BEGIN held back, so those statements run outside the transaction. For PRAGMAs
    such as ``foreign_keys``, which SQLite ignores inside one."""
    target = getattr(connection, "_connection", connection)
    if not isinstance(target, _Connection):
        raise TypeError(f"not a connection of ours: {type(connection).__name__}")
    pending, target.pending_begin = target.pending_begin, None
    try:
        run()
    finally:
        target.pending_begin = pending


class _Connection(aiosqlite.Connection):
    #: The BEGIN the next statement runs first (see ``defer_begin``).
    pending_begin: str | None = None

    async def commit(self) -> None:
        if self.pending_begin is not None:
            self.pending_begin = None  # nothing ran: nothing began, nothing to commit
            return
        await super().commit()

    def cursor(self) -> _Opened:  # type: ignore[override]
        # aiosqlite makes the sqlite3 cursor in a trip of its own; ours is made by the
        # first execute, in the same trip as the statement.
        return _Opened(_Cursor(self))

    async def rollback(self) -> None:
        # SQLAlchemy rolls back every connection it puts back in its pool, most often right
        # after a commit, when there is nothing to roll back: no trip for that. (Nothing
        # runs on this connection's thread meanwhile: SQLAlchemy awaits each call.)
        self.pending_begin = None
        try:
            idle = self._connection is not None and not self._connection.in_transaction
        except sqlite3.ProgrammingError:  # check_same_thread (":memory:"): ask the thread
            idle = False
        if not idle:
            await super().rollback()


class _Opened:
    """What ``Connection.cursor()`` returns: awaitable, and an async context manager."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: _Cursor) -> None:
        self._cursor = cursor

    async def _get(self) -> _Cursor:
        return self._cursor

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._get().__await__()

    async def __aenter__(self) -> _Cursor:
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        await self._cursor.close()


def _run(conn: _Connection, cursor: sqlite3.Cursor | None, call: Callable[[sqlite3.Cursor], object]
         ) -> tuple[sqlite3.Cursor, list[Any] | None]:
    """On the connection's thread: the transaction's BEGIN if it is still to run, then the
    statement and all of its rows."""
    begin = conn.pending_begin
    if begin is not None:
        # Cleared only once it ran: if BEGIN IMMEDIATE fails (busy), the transaction
        # never began, and the rollback that follows takes no trip.
        conn._conn.execute(begin)
        conn.pending_begin = None
    if cursor is None:
        cursor = conn._conn.cursor()
    call(cursor)
    return cursor, (cursor.fetchall() if cursor.description is not None else None)


class _Cursor(aiosqlite.Cursor):
    def __init__(self, conn: _Connection) -> None:  # no super().__init__: no sqlite3 cursor yet
        self.iter_chunk_size = conn._iter_chunk_size
        self._conn = conn
        self._cursor: sqlite3.Cursor | None = None  # type: ignore[assignment]
        self._rows: list[Any] = []
        self._arraysize = 1

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> _Cursor:
        params = [] if parameters is None else parameters
        self._cursor, rows = await self._conn._execute(_run, self._conn, self._cursor,
                                                       lambda c: c.execute(sql, params))
        self._rows = rows or []
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> _Cursor:
        self._cursor, rows = await self._conn._execute(_run, self._conn, self._cursor,
                                                       lambda c: c.executemany(sql, parameters))
        self._rows = rows or []
        return self

    async def executescript(self, sql_script: str) -> _Cursor:
        self._cursor, rows = await self._conn._execute(_run, self._conn, self._cursor,
                                                       lambda c: c.executescript(sql_script))
        self._rows = rows or []
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        size = self._arraysize if size is None else size
        batch, self._rows = self._rows[:size], self._rows[size:]
        return batch

    async def fetchall(self) -> Sequence[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        # The sqlite3 cursor stays referenced: SQLAlchemy reads rowcount after closing.
        self._rows = []

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount if self._cursor is not None else -1

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid if self._cursor is not None else None

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    @property
    def description(self) -> Any:
        return self._cursor.description if self._cursor is not None else None
