"""Small notifications between the ``posventa serve`` processes that share a database.

``Notifier.publish(topic, payload)`` reaches every ``subscribe(topic, callback)`` in
every process, this one included. The ``Notifier`` protocol is core's (``core.ports``,
where adapters see it); two implementations, picked by ``notifier_for(db)``:

- ``LocalNotifier`` (SQLite: one process owns the file) calls this process's
  subscribers and nobody else;
- ``PgNotifier`` (PostgreSQL) also sends ``NOTIFY posventa_<topic>`` and holds one
  dedicated connection that ``LISTEN``\\ s, reconnecting with backoff when the database
  restarts.

Delivery is **best effort**: a notification published while the listening connection is
being re-established, or while the database is down, is gone. So a payload carries ids
(what to look up), never content, and every use has a fallback that does not depend on
it: a web chat push that nobody confirms stays in the outbox; a console page refetches
when it reconnects. PostgreSQL limits a payload to 8000 bytes; ``publish`` refuses more
(``MAX_PAYLOAD_BYTES``) rather than fail later in the sender.

Callbacks are plain functions called on the event loop, in publish order per process;
they should hand work to a task rather than do I/O themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import re
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from posventa.core.persistence.database import Database
from posventa.core.ports import Notifier
from posventa.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Callback = Callable[[str], None]

#: Topic names become PostgreSQL channel names (``posventa_<topic>``, 63 bytes at most).
TOPIC_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: PostgreSQL's payload limit is 8000 bytes; the envelope (our process id) needs a few.
MAX_PAYLOAD_BYTES = 7_900
CHANNEL_PREFIX = "posventa_"


def check_topic(topic: str) -> str:
    if not TOPIC_PATTERN.fullmatch(topic):
        raise ValueError(f"not a notification topic: {topic!r} (lower-case letters, digits, _)")
    return topic


def check_payload(payload: str) -> str:
    if len(payload) * 4 > MAX_PAYLOAD_BYTES and len(payload.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"notification payloads are limited to {MAX_PAYLOAD_BYTES} bytes: send ids, not content")
    if "\x00" in payload:
        raise ValueError("a notification payload cannot contain NUL")
    return payload


class _Subscribers:
    """Callbacks by topic, called on the loop (never inside ``publish``'s caller)."""

    def __init__(self) -> None:
        self.by_topic: dict[str, list[Callback]] = {}

    def add(self, topic: str, callback: Callback) -> bool:
        """Returns True when this is the topic's first subscriber."""
        callbacks = self.by_topic.setdefault(check_topic(topic), [])
        callbacks.append(callback)
        return len(callbacks) == 1

    def dispatch(self, topic: str, payload: str) -> None:
        for callback in list(self.by_topic.get(topic, ())):
            try:
                callback(payload)
            except Exception:  # one subscriber's bug must not starve the others
                log.exception("notification subscriber for %r failed", topic)


class LocalNotifier:
    """One process: subscribers here are everyone there is."""

    shared = False

    def __init__(self) -> None:
        self._subscribers = _Subscribers()

    def publish(self, topic: str, payload: str) -> None:
        check_topic(topic)
        check_payload(payload)
        # Later on the loop, as PostgreSQL would: a publisher never runs its subscribers
        # in the middle of its own work.
        asyncio.get_running_loop().call_soon(self._subscribers.dispatch, topic, payload)

    def subscribe(self, topic: str, callback: Callback) -> None:
        self._subscribers.add(topic, callback)

    async def ready(self, timeout: float) -> bool:
        return True

    async def flush(self, timeout: float) -> bool:
        return True

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class PgNotifier:
    """``NOTIFY`` through the pool, ``LISTEN`` on one dedicated asyncpg connection.

    Every payload travels as ``<process id>|<payload>``: this process's own subscribers
    are called directly at publish time, and its own echo from PostgreSQL is dropped, so
    a subscriber hears each publication once wherever it was made.
    """

    shared = True

    def __init__(self, *, db: Database, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 ping_seconds: float = 10.0, queue_size: int = 10_000, batch: int = 500) -> None:
        if db.is_sqlite:
            raise ValueError("PgNotifier needs PostgreSQL; use LocalNotifier with SQLite")
        self._db = db
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._ping_seconds = ping_seconds
        self._batch = batch
        self.node = secrets.token_hex(6)
        self._subscribers = _Subscribers()
        self._outgoing: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=queue_size)
        self._conn: Any = None  # the asyncpg connection that LISTENs, while it is up
        self._lost = asyncio.Event()
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Set while LISTEN is in place (tests and health checks wait on it).
        self.listening = asyncio.Event()
        self.reconnects = 0
        self.dropped = 0
        self.published = 0
        self.received = 0
        #: Publications queued, and those sent or given up on (``flush`` waits for these to meet).
        self._queued = 0
        self._handled = 0
        self._progress = asyncio.Condition()
        #: One LISTEN at a time: asyncpg runs one command per connection, and a second
        #: topic subscribed right after the first would fail ("another operation is in
        #: progress") and never be heard.
        self._listen_lock = asyncio.Lock()

    # --- the port ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: str) -> None:
        check_topic(topic)
        check_payload(payload)
        asyncio.get_running_loop().call_soon(self._subscribers.dispatch, topic, payload)
        try:
            self._outgoing.put_nowait((CHANNEL_PREFIX + topic, f"{self.node}|{payload}"))
            self._queued += 1
        except asyncio.QueueFull:
            # The database has been unreachable for a while; other processes miss this one.
            self.dropped += 1

    def subscribe(self, topic: str, callback: Callback) -> None:
        if self._subscribers.add(topic, callback) and self._conn is not None:
            # Already listening: add the channel now (a reconnect re-LISTENs every topic).
            self._tasks.append(asyncio.create_task(self._listen_late(topic), name=f"listen-{topic}"))

    async def ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.listening.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def flush(self, timeout: float) -> bool:
        target = self._queued
        try:
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(lambda: self._handled >= target)
            return True
        except TimeoutError:
            return False

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        self._stopping = False
        self._stop_event.clear()
        self._tasks = [asyncio.create_task(self._listen_forever(), name="notify-listen"),
                       asyncio.create_task(self._send_forever(), name="notify-send")]

    async def stop(self) -> None:
        self._stopping = True
        self._stop_event.set()
        self._lost.set()
        # Give what is queued one chance to go out (a short drain, not a guarantee).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush(), timeout=2)
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await self._close_listener()

    # --- listening ------------------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._connect()
                failures = 0
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("notifications: listening connection failed (%s); reconnecting", type(exc).__name__)
            await self._close_listener()
            if self._stopping:
                return
            self.reconnects += 1
            delay = min(self._backoff_max, self._backoff_base * 2 ** min(failures, 10))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), timeout=delay * (0.5 + random.random() / 2))

    async def _connect(self) -> None:
        self._lost.clear()
        conn = await connect_raw(self._db)
        conn.add_termination_listener(lambda _conn: self._lost.set())
        self._conn = conn
        for topic in list(self._subscribers.by_topic):
            await self._listen_one(topic)
        self.listening.set()
        log.info("notifications: listening on %d topic(s)", len(self._subscribers.by_topic))

    async def _listen_one(self, topic: str) -> None:
        async with self._listen_lock:
            conn = self._conn
            if conn is not None and not conn.is_closed():
                await conn.add_listener(CHANNEL_PREFIX + topic, self._on_notification)

    async def _listen_late(self, topic: str) -> None:
        try:
            await self._listen_one(topic)
        except Exception as exc:
            # The connection is going; the reconnect LISTENs every topic, this one included.
            log.warning("notifications: LISTEN %s failed (%s); it is retried on reconnect", topic, type(exc).__name__)
            self._lost.set()

    async def _watch(self) -> None:
        """Until the connection is lost: a ping now and then finds a dead peer that never
        said goodbye (a database host that vanished rather than restarted)."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout=self._ping_seconds)
            if self._stopping:
                return
            if self._lost.is_set() or self._conn is None or self._conn.is_closed():
                raise ConnectionError("listening connection closed")
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), timeout=self._ping_seconds)

    async def _close_listener(self) -> None:
        self.listening.clear()
        conn, self._conn = self._conn, None
        await close_raw(conn)

    def _on_notification(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        node, sep, body = payload.partition("|")
        if not sep or node == self.node:
            return  # our own echo: local subscribers already have it
        self.received += 1
        self._subscribers.dispatch(channel.removeprefix(CHANNEL_PREFIX), body)

    # --- sending --------------------------------------------------------------------------------

    async def _send_forever(self) -> None:
        while True:
            first = await self._outgoing.get()
            await self._send([first, *self._drain()])

    def _drain(self) -> list[tuple[str, str]]:
        items = []
        while len(items) < self._batch - 1:
            try:
                items.append(self._outgoing.get_nowait())
            except asyncio.QueueEmpty:
                break
        return items

    async def _flush(self) -> None:
        while not self._outgoing.empty():
            await self._send(self._drain())

    async def _send(self, items: list[tuple[str, str]]) -> None:
        if not items:
            return
        try:
            await self._send_now(items)
        finally:
            self._handled += len(items)
            async with self._progress:
                self._progress.notify_all()

    async def _send_now(self, items: list[tuple[str, str]]) -> None:
        try:
            # One round trip for a whole batch; a function scan returns rows in array
            # order, so subscribers elsewhere hear them in publish order. Autocommit: the
            # statement is its own transaction, without a BEGIN and a COMMIT round trip.
            async with self._db.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(
                    text("SELECT pg_notify(c, p) FROM unnest(CAST(:c AS text[]), CAST(:p AS text[])) AS t(c, p)"),
                    {"c": [c for c, _ in items], "p": [p for _, p in items]})
            self.published += len(items)
        except Exception as exc:
            self.dropped += len(items)
            log.warning("notifications: %d not sent (%s: %s)", len(items), type(exc).__name__, str(exc)[:200])


def notifier_for(db: Database) -> Notifier:
    return LocalNotifier() if db.is_sqlite else PgNotifier(db=db)


async def connect_raw(db: Database, *, timeout: float = 10.0) -> Any:
    """A dedicated asyncpg connection with the pool's own connection arguments (host,
    credentials, ssl...), for session state a pooled connection must not carry:
    LISTEN, and session-level advisory locks."""
    import asyncpg  # the PostgreSQL driver, only needed here on PostgreSQL

    _args, kwargs = db.engine.dialect.create_connect_args(db.engine.url)
    accepted = set(inspect.signature(asyncpg.connect).parameters)
    direct = {k: v for k, v in kwargs.items() if k in accepted}
    settings = {k: str(v) for k, v in kwargs.items() if k not in accepted}
    if settings:  # e.g. ?application_name=… in the URL: a server setting for asyncpg
        direct["server_settings"] = {**settings, **(direct.get("server_settings") or {})}
    direct["timeout"] = timeout
    return await asyncpg.connect(**direct)


async def close_raw(conn: Any | None) -> None:
    """Close a ``connect_raw`` connection (None: nothing to do), politely for two seconds,
    then by force: a connection whose server is gone may never answer a polite close, and
    a close that fails leaves nothing to report (the session state dies with it)."""
    if conn is None:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), timeout=2)
    if not conn.is_closed():
        conn.terminate()
