"""Live updates for open console pages, over Server-Sent Events.

The inbox calls ``publish`` after each commit; every open page gets a small event
(case number, message id, channel) and fetches the fresh, server-rendered fragment
itself. No message text goes over this stream, so escaping stays in one place: the
templates.

With a ``Notifier`` (``core.persistence.notify``) the events go through it, so on
PostgreSQL a message stored by one ``posventa serve`` process reaches the pages connected
to every other (LISTEN/NOTIFY). The events are ids, far below the 8000-byte payload
limit once chunked; a notification lost while the database restarts costs a page one
refresh, never a message. Without one, events stay in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from core.inbox import StoredMessage
from core.persistence.notify import Notifier

log = logging.getLogger(__name__)

#: Proxies close idle connections; a comment line every so often keeps the stream open.
KEEPALIVE_SECONDS = 15.0
TOPIC = "console_live"
#: Events per notification: each is well under 100 bytes, the payload limit is 8000.
EVENTS_PER_NOTIFICATION = 50


class LiveUpdates:
    def __init__(self, *, max_clients: int = 500, queue_size: int = 100,
                 keepalive_seconds: float = KEEPALIVE_SECONDS, notifier: Notifier | None = None) -> None:
        self._notifier = notifier
        self._subscribed = False
        self._clients: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._max_clients = max_clients
        self._queue_size = queue_size
        self._keepalive = keepalive_seconds
        self._closing = False

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, stored: Sequence[StoredMessage]) -> None:
        if not self._clients and (self._notifier is None or not self._notifier.shared):
            # Nobody to tell: no page open here, and no other process hears this notifier
            # (SQLite). Encoding and decoding every batch for nobody was a visible share of
            # the inbox batcher's time.
            return
        events = [{"case": s.case_id, "message_id": s.message_id, "channel": s.channel.value,
                   "new_case": s.new_case} for s in stored if s.case_id is not None]
        if not events:
            return
        if self._notifier is None:
            self._deliver(events)
            return
        for start in range(0, len(events), EVENTS_PER_NOTIFICATION):
            chunk = events[start:start + EVENTS_PER_NOTIFICATION]
            self._notifier.publish(TOPIC, json.dumps(chunk, separators=(",", ":")))

    def _on_notification(self, payload: str) -> None:
        try:
            decoded = json.loads(payload)
        except ValueError:
            return
        if isinstance(decoded, list):
            # Re-shaped field by field: only ids and flags ever reach a page.
            self._deliver([{"case": e["case"], "message_id": e["message_id"], "channel": str(e["channel"])[:20],
                            "new_case": bool(e.get("new_case"))}
                           for e in decoded if isinstance(e, dict) and type(e.get("case")) is int
                           and type(e.get("message_id")) is int and "channel" in e])

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        for queue in list(self._clients):
            for event in events:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    # A client this far behind reloads anyway; drop it rather than grow.
                    self._drop(queue)
                    break

    async def stream(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            raise web.HTTPServiceUnavailable(text="shutting down")
        if len(self._clients) >= self._max_clients:
            raise web.HTTPServiceUnavailable(text="too many live connections", headers={"Retry-After": "30"})
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=self._queue_size)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        self._clients.add(queue)
        try:
            # Tells EventSource how long to wait before reconnecting after we close.
            await response.write(b"retry: 3000\n: connected\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), self._keepalive)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if event is None:
                    break
                await response.write(f"event: message\ndata: {json.dumps(event)}\n\n".encode())
        except ConnectionResetError:
            return response  # the page went away
        finally:
            self._clients.discard(queue)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    def _drop(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._clients.discard(queue)
        with contextlib.suppress(asyncio.QueueFull):
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)

    async def start(self) -> None:
        self._closing = False
        if self._notifier is not None and not self._subscribed:
            self._notifier.subscribe(TOPIC, self._on_notification)
            self._subscribed = True

    async def stop(self) -> None:
        """End every stream so the HTTP server can shut down without waiting on them."""
        self._closing = True
        for queue in list(self._clients):
            self._drop(queue)
        for _ in range(50):
            if not self._clients:
                break
            await asyncio.sleep(0.02)
