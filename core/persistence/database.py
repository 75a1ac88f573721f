"""The database handle: one async engine, SQLite or PostgreSQL, with the pragmas each needs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from posventa.core.errors import ConfigError, StorageUnavailable
from posventa.core.persistence import sqlite_driver
from posventa.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
#: After a write, the WAL is checkpointed into the database file at most this often.
SQLITE_CHECKPOINT_SECONDS = 0.25
#: A pooled PostgreSQL connection idle for longer than this is pinged before use.
PG_PING_AFTER_IDLE_SECONDS = 1.0


class Database:
    """Owns the engine. ``transaction()`` is the only way application code writes;
    reads use ``engine.connect()``.

    SQLite runs in WAL mode with foreign keys on. Write transactions start with
    ``BEGIN IMMEDIATE``: a deferred transaction that later writes can fail with
    "database is locked" without waiting, while IMMEDIATE waits on ``busy_timeout``.
    Reads start deferred, so in WAL mode they never block a writer.

    SQLite has one writer at a time, so this process's write transactions also take
    turns on an asyncio lock before they reach the database. Left to SQLite, a writer
    that finds the lock taken polls it from its driver thread, sleeping 1, 2, 5, 10, …
    ms between tries (the busy handler): under load (the inbox batcher against an outbox
    worker's claim) that sleep was most of a batch's latency. The lock hands the turn over
    the moment the previous writer commits; ``busy_timeout`` still covers other
    processes (the CLI) on the same file.

    SQLite's automatic checkpoint (copying the WAL back into the database file, with
    its fsyncs) runs inside the commit that crosses 1,000 WAL pages: every third inbox
    batch under load, adding 6 ms to that batch while its customers waited. Here the
    pool's connections never checkpoint; ``_Checkpointer`` does, a moment after
    writes, on a connection of its own in a worker thread (PASSIVE: it never waits for,
    nor blocks, a reader or the writer). Durability is unchanged: a commit is in the WAL
    either way, and an open of the file replays whatever was not checkpointed.
    """

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError with the url in it
            raise ConfigError("not a database URL", key="database.url") from exc
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.drivername != "sqlite+aiosqlite":
                raise ConfigError("SQLite needs the async driver: sqlite+aiosqlite:///file.db", key="database.url")
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            async def connect_sqlite() -> object:
                # The dialect's own arguments for the URL (file name, check_same_thread),
                # through our aiosqlite whose statements take one trip to its thread.
                args, kwargs = self.engine.sync_engine.dialect.create_connect_args(self.engine.sync_engine.url)
                conn = sqlite_driver.connect(*args, **{**kwargs, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
                conn._thread.daemon = True  # as SQLAlchemy does for aiosqlite: never holds up exit
                return await conn

            self.engine: AsyncEngine = create_async_engine(url, echo=echo, async_creator=connect_sqlite,
                                                           json_serializer=json_text)
            event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_on_begin)
        elif self.dialect == "postgresql":
            if parsed.drivername != "postgresql+asyncpg":
                raise ConfigError("PostgreSQL needs the async driver: postgresql+asyncpg://…", key="database.url")
            # LIFO: the busiest users (the inbox batcher, the outbox workers) keep getting
            # the connection they just returned, whose statement cache (asyncpg prepares each
            # statement once per connection) already holds their statements; first-in-first-
            # out handed each batch the least recently used one and re-prepared everything.
            self.engine = create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size,
                                              pool_use_lifo=True, json_serializer=json_text)
            for name, listener in (("connect", _pg_mark_idle), ("checkin", _pg_mark_idle),
                                   ("checkout", _pg_on_checkout)):
                event.listen(self.engine.sync_engine.pool, name, listener)
        else:
            raise ConfigError(f"unsupported database {self.dialect!r}: use sqlite or postgresql", key="database.url")
        self._write_turn = asyncio.Lock() if self.dialect == "sqlite" else None
        on_file = self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:")
        self.checkpointer = _Checkpointer(str(parsed.database)) if on_file else None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; commits on success. Connection-level failures become
        ``StorageUnavailable`` so transports can answer "try later"."""
        if self._write_turn is None:
            async with self._transaction() as conn:
                yield conn
            return
        try:
            # As long as SQLite itself would wait for the write lock, then "try later".
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
                await self._write_turn.acquire()
        except TimeoutError:
            log.warning("database unavailable: no write turn within the busy timeout")
            raise StorageUnavailable("database is locked") from None
        try:
            async with self._transaction() as conn:
                yield conn
        finally:
            self._write_turn.release()
            if self.checkpointer is not None:
                self.checkpointer.wrote()

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection (no write lock on SQLite) whose failures become
        ``StorageUnavailable``, like ``transaction`` does for writes."""
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (OperationalError, DBAPIError, OSError, ConnectionError) as exc:
            raise StorageUnavailable(type(exc).__name__) from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                # Marks the transaction as a write: on SQLite "begin" then takes the write
                # lock up front (BEGIN IMMEDIATE); reads elsewhere stay deferred and never block writers.
                conn = await conn.execution_options(posventa_write=True)
                async with conn.begin():
                    yield conn
        except IntegrityError:
            raise
        except (OperationalError, DBAPIError, OSError, ConnectionError) as exc:
            if isinstance(exc, DBAPIError) and not _is_availability_error(exc):
                raise
            log.warning("database unavailable: %s", type(exc).__name__)
            raise StorageUnavailable(str(type(exc).__name__)) from exc

    async def dispose(self) -> None:
        if self.checkpointer is not None:
            await self.checkpointer.close()
        # The last connection to close checkpoints the WAL entirely (SQLite does that).
        await self.engine.dispose()


class _Checkpointer:
    """Checkpoints one SQLite file's WAL, a moment after writes, from a thread and a
    connection of its own (see ``Database``). Everything it does on the connection,
    closing included, runs on its one thread, in order: a close never meets a
    checkpoint still running."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
        self._conn: sqlite3.Connection | None = None
        self._wrote = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.done = 0

    def wrote(self) -> None:
        """A write transaction ended: checkpoint soon."""
        self._wrote.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sqlite-checkpoint")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wrote.wait()
            self._wrote.clear()
            try:
                await loop.run_in_executor(self._thread, self._checkpoint)
                self.done += 1
            except sqlite3.Error as exc:
                # The next write tries again; meanwhile the WAL grows, nothing is lost.
                log.warning("sqlite: checkpoint failed (%s)", exc)
            await asyncio.sleep(SQLITE_CHECKPOINT_SECONDS)

    def _checkpoint(self) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)


def json_text(value: object) -> str:
    """JSON columns' text: compact UTF-8 by orjson, in C. SQLAlchemy's default, the
    stdlib's ``json.dumps``, was a visible part of storing a batch that opens cases (each
    greeting's outbox payload and choices). What orjson refuses (ints past 64 bits, or
    times and dataclasses, which it would encode where the stdlib refuses) the stdlib
    decides, as before."""
    try:
        return orjson.dumps(value, option=_ORJSON_JSON_COLUMNS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


_ORJSON_JSON_COLUMNS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _is_availability_error(exc: DBAPIError) -> bool:
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return True
    text = str(exc.orig).lower() if exc.orig is not None else ""
    return any(s in text for s in ("connection", "locked", "shutdown", "terminat", "timeout"))


def _pg_mark_idle(_dbapi_connection, record) -> None:
    record.info["idle_since"] = time.monotonic()


def _pg_on_checkout(dbapi_connection, record, _proxy) -> None:
    """Pessimistic disconnect handling, cheaper than ``pool_pre_ping``: that pings on every
    checkout, and asyncpg's ping is three round trips (BEGIN, an empty query, ROLLBACK),
    which was more than a third of an inbox batch's round trips. A connection the server
    closed (a restart) is known to asyncpg without asking; one that sat idle may have
    died silently, so it is pinged; one returned a moment ago was just working. Raising
    DisconnectionError makes the pool replace the connection and try again."""
    if record.driver_connection is None or record.driver_connection.is_closed():
        raise DisconnectionError("connection closed by the server")
    if time.monotonic() - record.info.get("idle_since", 0.0) > PG_PING_AFTER_IDLE_SECONDS:
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError("ping failed") from exc


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Take manual control of transactions so "begin" below can issue BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints are the Database's _Checkpointer's, off the committing connection's path.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _sqlite_on_begin(conn) -> None:
    # Run by the transaction's first statement, in that statement's trip to the thread.
    sqlite_driver.defer_begin(conn.connection.dbapi_connection,
                              "BEGIN IMMEDIATE" if conn.get_execution_options().get("posventa_write") else "BEGIN")
