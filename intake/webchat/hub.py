"""Live web chat sockets by session, so a reply reaches a connected visitor.

``Hub`` is the small interface the channel and the server use; ``LocalHub`` keeps this
process's sockets. Several processes (PostgreSQL deployments) need a hub that also
forwards a push to the process holding the socket (LISTEN/NOTIFY): it implements the
same interface around a ``LocalHub``, and ``push`` then counts remote deliveries too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

import orjson
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

Frame = dict[str, Any]

#: A push that cannot be written in this long means a stuck client: drop the socket
#: (the message stays stored and is replayed when the visitor reconnects).
SEND_TIMEOUT_SECONDS = 5.0
#: Live pushes held while a connection is still replaying its history.
MAX_BUFFERED = 200

#: Frames are compact UTF-8 JSON with text as is (not \u-escaped), as bytes for the socket.
#: orjson: the stdlib encoder was about 4% of the server's CPU at 500 busy chats.
encode_frame = orjson.dumps


class Connection:
    """One websocket of one session. Frames go out in the order ``send`` is called, and
    pushes that arrive while the history is being replayed wait so the visitor sees
    them in order. No lock is needed for that: aiohttp writes an uncompressed frame into
    the transport within the call, and only then may wait for the buffer to drain.

    A write that does not finish within ``SEND_TIMEOUT_SECONDS`` (a client that stopped
    reading) is noticed by the server's watchdog (``stuck``), which drops the socket: one
    periodic check for every connection instead of a timer (and, with ``wait_for``, a
    task) per frame, which cost more than writing the frame itself.
    """

    __slots__ = ("ws", "ip", "public_id", "_buffer", "_replaying", "closed_reason", "last_frame_at",
                 "last_pong_at", "ping_sent_at", "_sending_since", "_sends_waiting", "errors_sent")

    def __init__(self, ws: web.WebSocketResponse, ip: str, *, now: float = 0.0) -> None:
        self.ws = ws
        self.ip = ip
        self.public_id: str | None = None
        self._buffer: list[Frame] = []
        self._replaying = True
        self.closed_reason: str | None = None
        #: Monotonic time of the last frame from the client (the server's idle check).
        self.last_frame_at = now
        #: Monotonic times of the last pong heard and of the server's ping not yet answered.
        self.last_pong_at = now
        self.ping_sent_at: float | None = None
        #: Since when writes have been waiting (for a client that does not read), and how many.
        self._sending_since: float | None = None
        self._sends_waiting = 0
        #: Error frames sent to this client (the server closes one that only earns errors).
        self.errors_sent = 0

    @property
    def open(self) -> bool:
        return not self.ws.closed and self.closed_reason is None

    def stuck(self, now: float) -> bool:
        """True when a write has been waiting for the client longer than the send timeout."""
        return self._sending_since is not None and now - self._sending_since > SEND_TIMEOUT_SECONDS

    async def send(self, frame: Frame) -> bool:
        """Write one frame; False when the socket is gone (or was dropped as stuck)."""
        if not self.open:
            return False
        data = encode_frame(frame)
        # Usually the frame goes straight into the transport's buffer and this returns
        # without waiting; only a full buffer (a client not reading) makes it wait, which
        # the watchdog ends.
        if not self._sends_waiting:
            self._sending_since = time.monotonic()
        self._sends_waiting += 1
        try:
            await self.ws.send_frame(data, WSMsgType.TEXT)
            return self.closed_reason is None
        except (ConnectionError, RuntimeError):
            return False
        finally:
            self._sends_waiting -= 1
            if not self._sends_waiting:
                self._sending_since = None

    async def push(self, frame: Frame) -> bool:
        """A live server message: written now, or held until the replay is done."""
        if self._replaying:
            if len(self._buffer) >= MAX_BUFFERED:
                return False
            self._buffer.append(frame)
            return True
        return await self.send(frame)

    async def finish_replay(self, replayed: set[int]) -> None:
        """Write what arrived during the replay (minus what it already showed), then go live."""
        while self._buffer:
            frame = self._buffer.pop(0)
            if frame.get("message_id") not in replayed:
                await self.send(frame)
        # No await between the empty check and this flag: nothing can slip in between.
        self._replaying = False

    async def ping(self) -> None:
        if self.open:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.ping()

    async def close(self, *, code: int, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        if not self.ws.closed:
            try:
                await self.ws.close(code=code, message=reason.encode()[:120])
            except (ConnectionError, RuntimeError):
                pass


class Hub(Protocol):
    def attach(self, public_id: str, conn: Connection) -> None: ...

    def detach(self, public_id: str, conn: Connection) -> None: ...

    async def push(self, public_id: str, frame: Frame) -> int:
        """Deliver ``frame`` to every live socket of the session; returns how many took it."""
        ...

    def count(self, public_id: str) -> int: ...


class LocalHub:
    """This process's sockets."""

    def __init__(self) -> None:
        self._by_session: dict[str, set[Connection]] = {}

    def attach(self, public_id: str, conn: Connection) -> None:
        conn.public_id = public_id
        self._by_session.setdefault(public_id, set()).add(conn)

    def detach(self, public_id: str, conn: Connection) -> None:
        conns = self._by_session.get(public_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_session[public_id]

    def count(self, public_id: str) -> int:
        return len(self._by_session.get(public_id, ()))

    async def push(self, public_id: str, frame: Frame) -> int:
        conns = list(self._by_session.get(public_id, ()))
        if not conns:
            return 0
        results = await asyncio.gather(*(c.push(frame) for c in conns))
        return sum(1 for ok in results if ok)

    def connections(self) -> list[Connection]:
        return [c for conns in self._by_session.values() for c in conns]

    @property
    def sessions(self) -> int:
        return len(self._by_session)
