"""Live updates for open console pages, over Server-Sent Events.

The inbox calls ``publish`` after each commit; every open page gets a small event
(case number, message id, channel) and fetches the fresh, server-rendered fragment
itself. No message text goes over this stream, so escaping stays in one place: the
templates.

With a ``Notifier`` (the ``core.ports`` protocol, handed in by the composition root) the
events go through it, so on PostgreSQL a message stored by one ``posventa serve`` process reaches the pages connected
to every other (LISTEN/NOTIFY). The events are ids, far below the 8000-byte payload
limit once chunked; a notification lost while the database restarts costs a page one
refresh, never a message. Without one, events stay in this process.

Agent notifications for the browser (``core.notifications.BrowserNotice``) travel the
same way on ``NOTICE_TOPIC`` and reach only the pages of the agent they are for, as
``event: notify``; the page shows them with the Notification API. These carry the
notification's short text (plain text: the browser shows it as such, never as HTML).

Events are only sent where a page can hear them. A process with pages open says so on
``WATCH_TOPIC`` when its first page connects and every ``WATCH_SECONDS`` after; the
others publish while they have heard that within ``3 * WATCH_SECONDS``. With no page
open anywhere (most of the time, for most processes), a batch costs nothing here: the
encoding, the NOTIFY and every other process's decoding were about a twentieth of a
busy PostgreSQL process's CPU. A page's stream says it is connected only once its
process's announcement has reached the database, so nothing committed afterwards, on
any process, is missed.

A case page's stream is also its tab's presence (``intake.console.presence``): it joins
the case's viewers when it connects, refreshes every ``REFRESH_SECONDS`` and leaves when
it ends; a change in who is on a case reaches that case's open pages as a ``presence``
event (no names: the page fetches the server-rendered list).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from posventa.core.inbox import StoredMessage
from posventa.core.notifications import BrowserNotice
from posventa.core.outbox import DeliveryRecorded
from posventa.core.ports import Notifier
from posventa.core.tasks import Periodic
from posventa.intake.console.i18n import _l, refusal
from posventa.intake.console.presence import REFRESH_SECONDS, CaseViewers, PresenceReport

log = logging.getLogger(__name__)

#: Proxies close idle connections; a comment line every so often keeps the stream open.
KEEPALIVE_SECONDS = 15.0
TOPIC = "console_live"
#: Events per notification: each is well under 100 bytes, the payload limit is 8000.
EVENTS_PER_NOTIFICATION = 50
#: "Pages are open here": sent by a process with live pages, this often.
WATCH_TOPIC = "console_watch"
WATCH_SECONDS = 10.0
#: Agent notifications for the browser, each to one agent's pages.
NOTICE_TOPIC = "console_notice"
#: A notice's text is cut to this many characters; a handful of notices per NOTIFY stays
#: well under the 8000-byte payload limit even in 4-byte UTF-8.
NOTICE_TEXT_CHARS = 300
NOTICES_PER_NOTIFICATION = 5
#: How long a stream waits for its announcement to reach the database before it starts.
ANNOUNCE_TIMEOUT_SECONDS = 2.0


class LiveUpdates:
    def __init__(self, *, max_clients: int = 500, queue_size: int = 100,
                 keepalive_seconds: float = KEEPALIVE_SECONDS, notifier: Notifier | None = None,
                 watch_seconds: float = WATCH_SECONDS, monotonic: Callable[[], float] = time.monotonic,
                 presence: Callable[[web.Request], Awaitable[None]] | None = None,
                 viewer: Callable[[web.Request], str | None] = lambda _request: None,
                 viewers: CaseViewers | None = None, viewers_refresh_seconds: float = REFRESH_SECONDS) -> None:
        self._notifier = notifier
        #: Who has which case open (collision warnings); its changes reach the pages of that case.
        self.viewers = viewers or CaseViewers(notifier=notifier, monotonic=monotonic)
        self.viewers.subscribe(self._on_viewers_changed)
        self._viewers_refresh = viewers_refresh_seconds
        #: The case each case page's stream shows (presence events go to those only).
        self._case_of: dict[asyncio.Queue[dict[str, Any] | None], int] = {}
        #: Told on connect and at every keepalive while a page is open: the agent is
        #: present (automatic assignment's availability).
        self._presence = presence
        #: Whose page a stream is (the agent's username), for their notifications.
        self._viewer = viewer
        self._subscribed = False
        #: Each open page's queue, and whose page it is.
        self._clients: dict[asyncio.Queue[dict[str, Any] | None], str | None] = {}
        self._max_clients = max_clients
        self._queue_size = queue_size
        self._keepalive = keepalive_seconds
        self._closing = False
        self._watch_seconds = watch_seconds
        self._monotonic = monotonic
        #: Until when another process is known to have pages open.
        self._watched_until = float("-inf")
        #: Tells this process's announcements from the others' (the notifier echoes ours here).
        self._token = secrets.token_hex(8)
        self._announcer = Periodic(name="console-live-announce", interval=watch_seconds, job=self._announce)
        #: Read by the service's /metrics.
        self.periodic_jobs = (self._announcer, self.viewers.sweeper)

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def watched_elsewhere(self) -> bool:
        """True while another process has said it has pages open."""
        return self._monotonic() < self._watched_until

    def publish(self, stored: Sequence[StoredMessage]) -> None:
        if not self._clients and not self.watched_elsewhere:
            # Nobody to tell: no page open here, and none elsewhere (or no elsewhere: SQLite).
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
            self._notifier.publish(TOPIC, orjson.dumps(chunk).decode())

    def publish_deliveries(self, recorded: Sequence[DeliveryRecorded]) -> None:
        """A reply was sent, or failed, or waits for a retry: its case page shows the new
        state (the inbox ignores these)."""
        if not self._clients and not self.watched_elsewhere:
            return
        events = [{"case": r.case_id, "message_id": r.message_id, "channel": "outbox", "new_case": False,
                   "delivery": r.state} for r in recorded]
        if self._notifier is None:
            self._deliver(events)
            return
        for start in range(0, len(events), EVENTS_PER_NOTIFICATION):
            self._notifier.publish(TOPIC, orjson.dumps(events[start:start + EVENTS_PER_NOTIFICATION]).decode())

    def publish_notices(self, notices: Sequence[BrowserNotice]) -> None:
        """Agent notifications for the browser: each to its agent's open pages, here or
        in any other process."""
        if not self._clients and not self.watched_elsewhere:
            return
        events = [{"notify": n.event, "case": n.case, "agent": n.agent, "text": n.text[:NOTICE_TEXT_CHARS],
                   "title": n.title[:NOTICE_TEXT_CHARS], "due_target": n.due_target[:30], "due_at": n.due_at[:40]}
                  for n in notices]
        if self._notifier is None:
            self._deliver_notices(events)
            return
        for start in range(0, len(events), NOTICES_PER_NOTIFICATION):
            self._notifier.publish(NOTICE_TOPIC, orjson.dumps(events[start:start + NOTICES_PER_NOTIFICATION]).decode())

    def _on_notice(self, payload: str) -> None:
        if not self._clients:
            return
        try:
            decoded = json.loads(payload)
        except ValueError:
            return
        if isinstance(decoded, list):
            self._deliver_notices([{"notify": str(e["notify"])[:30], "case": e["case"], "agent": e["agent"],
                                    "text": str(e.get("text", ""))[:NOTICE_TEXT_CHARS],
                                    "title": str(e.get("title", ""))[:NOTICE_TEXT_CHARS],
                                    "due_target": str(e.get("due_target", ""))[:30],
                                    "due_at": str(e.get("due_at", ""))[:40]}
                                   for e in decoded if isinstance(e, dict) and type(e.get("case")) is int
                                   and isinstance(e.get("agent"), str) and "notify" in e])

    def _deliver_notices(self, events: list[dict[str, Any]]) -> None:
        for queue, agent in list(self._clients.items()):
            for event in events:
                if agent is None or event["agent"] != agent:
                    continue
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    self._drop(queue)
                    break

    def _on_watch(self, payload: str) -> None:
        if payload != self._token:
            self._watched_until = self._monotonic() + 3 * self._watch_seconds

    async def _announce(self) -> None:
        if self._clients and self._notifier is not None:
            self._notifier.publish(WATCH_TOPIC, self._token)

    def _on_notification(self, payload: str) -> None:
        if not self._clients:
            return  # nobody here to tell: not even worth decoding
        try:
            decoded = json.loads(payload)
        except ValueError:
            return
        if isinstance(decoded, list):
            # Re-shaped field by field: only ids and flags ever reach a page.
            self._deliver([{"case": e["case"], "message_id": e["message_id"], "channel": str(e["channel"])[:20],
                            "new_case": bool(e.get("new_case")),
                            **({"delivery": str(e["delivery"])[:20]} if "delivery" in e else {})}
                           for e in decoded if isinstance(e, dict) and type(e.get("case")) is int
                           and type(e.get("message_id")) is int and "channel" in e])

    def _on_viewers_changed(self, case: int) -> None:
        for queue, shown in list(self._case_of.items()):
            if shown == case:
                try:
                    queue.put_nowait({"case": case, "presence": True})
                except asyncio.QueueFull:
                    self._drop(queue)

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        for queue in list(self._clients):
            for event in events:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    # A client this far behind reloads anyway; drop it rather than grow.
                    self._drop(queue)
                    break

    async def stream(self, request: web.Request, *, viewer: PresenceReport | None = None,
                     notice_text: Callable[[dict[str, Any]], str] | None = None) -> web.StreamResponse:
        """The page's event stream; ``viewer``: a case page's tab, present while this lasts;
        ``notice_text``: a notification's words for this page's reader (their language and
        time zone), from the notice's fields."""
        if self._closing:
            raise refusal(web.HTTPServiceUnavailable, _l("The service is shutting down."))
        if len(self._clients) >= self._max_clients:
            raise refusal(web.HTTPServiceUnavailable, _l("Too many live connections."), headers={"Retry-After": "30"})
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=self._queue_size)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        self._clients[queue] = self._viewer(request)
        if viewer is not None:
            self._case_of[queue] = viewer.case
        if self._notifier is not None and self._notifier.shared:
            # Before "connected": from then on every process publishes to this page.
            self._notifier.publish(WATCH_TOPIC, self._token)
            if not await self._notifier.flush(ANNOUNCE_TIMEOUT_SECONDS):
                log.warning("console live: the announcement of an open page did not reach the database in time")
        try:
            # Tells EventSource how long to wait before reconnecting after we close.
            # Presence first: once a page reads "connected", its agent counts as available.
            await self._present(request)
            if viewer is not None:
                self.viewers.report(viewer)
                refresh_at = self._monotonic() + self._viewers_refresh
            await response.write(b"retry: 3000\n: connected\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), min(self._keepalive, self._viewers_refresh))
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    await self._present(request)
                    event = {}
                if viewer is not None and self._monotonic() >= refresh_at:
                    # Still here (events or not): the other processes' tables keep this tab.
                    self.viewers.report(viewer)
                    refresh_at = self._monotonic() + self._viewers_refresh
                if event is None:
                    break
                if not event:
                    continue
                name = "notify" if "notify" in event else "presence" if "presence" in event else "message"
                if name == "notify":
                    event = {"notify": event["notify"], "case": event["case"],
                             "text": notice_text(event) if notice_text is not None else event["text"]}
                await response.write(f"event: {name}\ndata: {json.dumps(event)}\n\n".encode())
        except ConnectionResetError:
            return response  # the page went away
        finally:
            self._clients.pop(queue, None)
            self._case_of.pop(queue, None)
            if viewer is not None and not self._closing:
                self.viewers.report(replace(viewer, state="left"))
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    async def _present(self, request: web.Request) -> None:
        if self._presence is None:
            return
        try:
            await self._presence(request)
        except Exception:  # a presence report lost costs one assignment round, never the page
            log.exception("console live: could not record the agent's presence")

    def _drop(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._clients.pop(queue, None)
        self._case_of.pop(queue, None)
        with contextlib.suppress(asyncio.QueueFull):
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)

    async def start(self) -> None:
        self._closing = False
        await self.viewers.start()
        if self._notifier is not None and not self._subscribed:
            self._notifier.subscribe(TOPIC, self._on_notification)
            self._notifier.subscribe(WATCH_TOPIC, self._on_watch)
            self._notifier.subscribe(NOTICE_TOPIC, self._on_notice)
            self._subscribed = True
        if self._notifier is not None and self._notifier.shared:
            await self._announcer.start()

    async def stop(self) -> None:
        """End every stream so the HTTP server can shut down without waiting on them."""
        self._closing = True
        await self._announcer.stop()
        await self.viewers.stop()
        for queue in list(self._clients):
            self._drop(queue)
        for _ in range(50):
            if not self._clients:
                break
            await asyncio.sleep(0.02)
