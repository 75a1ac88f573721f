"""Web chat pushes across ``serve`` processes (PostgreSQL deployments).

A visitor's websocket lives in one process; the outbox item for a reply may be claimed
by any other. ``FanoutHub`` is the ``Hub`` the webchat channel uses there: it pushes to
this process's sockets (its ``LocalHub``) and, when the visitor is not connected here,
asks the others through the ``Notifier`` (LISTEN/NOTIFY):

    push(session, frame)
      ├── delivered here?  yes → done (plus a copy for the visitor's tabs elsewhere)
      ├── seen lately?     no  → 0: nobody is connected anywhere; the item waits
      └── NOTIFY {session, message id, request id} → the process holding the socket
          reads the message row, pushes it and NOTIFYs an ack → the count it took

Only ids travel (a payload is at most 8000 bytes and may be lost); the holder reads the
message (``ChatSessions.messages_to``), so what it shows is what the history replay would
show. No ack within ``ack_timeout`` counts as "not delivered", as from a ``LocalHub``:
the webchat channel keeps the reply for the history replay and, in time, sends it by email;
a late push that did arrive is deduplicated by the widget on ``message_id``.

"Seen lately" is a session's last seen time (core's ``ChatSessions``): a hello sets it,
and every process refreshes it for its open sockets every ``heartbeat_seconds``. A session not refreshed for
three heartbeats is connected nowhere (a process killed with its sockets stops
refreshing), so a reply to a visitor who left costs no NOTIFY and no waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from posventa.core import Database
from posventa.core.chat_sessions import ChatSessions, SessionMessage
from posventa.core.errors import StorageUnavailable, TransientDeliveryError
from posventa.core.ports import Clock, Notifier
from posventa.core.tasks import Periodic, cancel_and_wait
from posventa.intake.webchat import protocol
from posventa.intake.webchat.history import frames_of_files, sender_of
from posventa.intake.webchat.hub import Connection, Frame, LocalHub

log = logging.getLogger(__name__)

PUSH_TOPIC = "webchat_push"
ACK_TOPIC = "webchat_ack"
HEARTBEAT_SECONDS = 15.0
#: Missed heartbeats after which a session counts as connected nowhere.
PRESENCE_HEARTBEATS = 3
#: Generous: the holder reads one row and writes one frame, but a loaded host can stall
#: an event loop for a while, and a push given up on while it was on its way costs a
#: needless retry (and maybe the email fallback). Only visitors seen in the last three
#: heartbeats, i.e. just leaving, ever make a worker wait this long for nothing.
ACK_TIMEOUT_SECONDS = 5.0
#: How long start-up waits for the LISTEN connection before going on without it.
READY_TIMEOUT_SECONDS = 10.0
#: Retry delay for a push this process could not forward (starting or stopping).
ELSEWHERE_RETRY_SECONDS = 5.0
#: Pushes from other processes waiting to be written here; past it they are dropped
#: (their senders see no ack and the outbox retries).
MAX_PENDING = 10_000
_BATCH = 200


class FanoutHub:
    """A ``Hub`` over this process's ``LocalHub`` that reaches sockets held elsewhere.
    A service component (``start``/``stop``): it listens and heartbeats while running."""

    def __init__(self, *, local: LocalHub, notifier: Notifier, db: Database, clock: Clock,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS, ack_timeout: float = ACK_TIMEOUT_SECONDS,
                 elsewhere_retry: float = ELSEWHERE_RETRY_SECONDS, registry: CollectorRegistry | None = None) -> None:
        self._local = local
        self._notifier = notifier
        self._sessions = ChatSessions(db=db, clock=clock)
        self._clock = clock
        self._heartbeat = heartbeat_seconds
        self._ack_timeout = ack_timeout
        self._elsewhere_retry = elsewhere_retry
        self._waiting: dict[str, asyncio.Future[int]] = {}
        #: Marks this process's own pushes: the notifier hands a publisher its own
        #: notifications too, and a copy meant for the visitor's tabs elsewhere must not
        #: come back as a second push (a message read again) to the socket it just reached.
        self._origin = secrets.token_hex(6)
        self._pending: asyncio.Queue[tuple[str, int, str | None]] = asyncio.Queue(maxsize=MAX_PENDING)
        self._tasks: list[asyncio.Task[None]] = []
        self._presence = Periodic(name="webchat-presence", interval=heartbeat_seconds, job=self.heartbeat,
                                  run_at_start=False, expected=(StorageUnavailable,))
        #: Read by the service's /metrics.
        self.periodic_jobs = (self._presence,)
        self._subscribed = False
        self._running = False
        self._events: Counter | None = None
        if registry is not None:
            self._events = Counter(
                "posventa_webchat_fanout", "Web chat pushes between processes: forwarded (asked the others), "
                "confirmed/unconfirmed (their answer), received (asked by another), delivered (written here "
                "for another)", ["event"], registry=registry)

    # --- the Hub interface -----------------------------------------------------------------------

    def attach(self, public_id: str, conn: Connection) -> None:
        self._local.attach(public_id, conn)

    def detach(self, public_id: str, conn: Connection) -> None:
        self._local.detach(public_id, conn)

    def count(self, public_id: str) -> int:
        return self._local.count(public_id)

    async def push(self, public_id: str, frame: Frame) -> int:
        """Sockets that took ``frame``, here or elsewhere. 0 means connected nowhere (the
        channel then waits, or falls back to email). Raises ``TransientDeliveryError`` while
        this process is starting or stopping and the visitor was seen lately: retry in a
        few seconds rather than after the away-visitor delay."""
        delivered = await self._local.push(public_id, frame)
        message_id = frame.get("message_id")
        if type(message_id) is not int:
            return delivered
        if delivered:
            if self._running:
                # The visitor may have another tab open on another process; it gets a
                # copy (no answer needed: this delivery already counts).
                self._publish(public_id, message_id, None)
            return delivered
        try:
            if not await self._seen_lately(public_id):
                return 0
        except StorageUnavailable:
            return 0  # cannot tell: the outbox retries
        if self._running:
            # No answer in time: as if connected nowhere (the visitor most likely just
            # left; their next hello replays it), so the channel's away-visitor rules apply.
            return await self._ask_others(public_id, message_id)
        raise TransientDeliveryError("the visitor was seen lately and this process cannot ask the others yet",
                                     retry_after=self._elsewhere_retry)

    async def _ask_others(self, public_id: str, message_id: int) -> int:
        request = secrets.token_hex(8)
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[request] = answer
        self._count("forwarded")
        try:
            self._publish(public_id, message_id, request)
            taken = await asyncio.wait_for(answer, self._ack_timeout)
        except TimeoutError:
            self._count("unconfirmed")
            return 0
        finally:
            self._waiting.pop(request, None)
        self._count("confirmed" if taken else "unconfirmed")
        return taken

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._subscribed:
            self._notifier.subscribe(PUSH_TOPIC, self._on_push)
            self._notifier.subscribe(ACK_TOPIC, self._on_ack)
            self._subscribed = True
        # Forward only once answers can be heard; until then pushes to visitors seen
        # lately are retried soon (see push).
        if not await self._notifier.ready(timeout=READY_TIMEOUT_SECONDS):
            log.warning("web chat: notifications are not up yet; pushes to other processes start when they are")
        self._running = True
        # A queue consumer, not a periodic job: it waits for pushes.
        self._tasks = [asyncio.create_task(self._deliver_forever(), name="webchat-fanout")]
        await self._presence.start()

    async def stop(self) -> None:
        self._running = False
        await self._presence.stop()
        await cancel_and_wait(self._tasks)
        self._tasks = []
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_result(0)

    # --- asking the others ------------------------------------------------------------------------

    def _publish(self, public_id: str, message_id: int, request: str | None) -> None:
        body: dict[str, Any] = {"s": public_id, "m": message_id, "o": self._origin}
        if request is not None:
            body["r"] = request
        self._notifier.publish(PUSH_TOPIC, json.dumps(body, separators=(",", ":")))

    async def _seen_lately(self, public_id: str) -> bool:
        since = self._clock.now() - timedelta(seconds=self._heartbeat * PRESENCE_HEARTBEATS)
        return await self._sessions.seen_since(public_id, since)

    def _on_ack(self, payload: str) -> None:
        try:
            body = json.loads(payload)
            request, taken = body["r"], body["n"]
        except (ValueError, KeyError, TypeError):
            return
        answer = self._waiting.get(request) if isinstance(request, str) else None
        if answer is not None and not answer.done() and type(taken) is int and taken > 0:
            answer.set_result(taken)

    # --- answering them ---------------------------------------------------------------------------

    def _on_push(self, payload: str) -> None:
        try:
            body = json.loads(payload)
            public_id, message_id, request = body["s"], body["m"], body.get("r")
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if not isinstance(public_id, str) or type(message_id) is not int or \
                not (request is None or isinstance(request, str)):
            return
        if body.get("o") == self._origin:
            return  # ours: pushed here already (or asked because it is not held here)
        if not self._local.count(public_id):
            return  # not ours: the process holding the socket answers
        self._count("received")
        try:
            self._pending.put_nowait((public_id, message_id, request))
        except asyncio.QueueFull:
            log.warning("web chat: too many pushes from other processes waiting; dropping one (it is retried)")

    async def _deliver_forever(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while len(batch) < _BATCH and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            try:
                await self._deliver(batch)
            except StorageUnavailable:
                pass  # no ack: the senders retry
            except Exception:
                log.exception("web chat: delivering pushes from other processes failed")

    async def _deliver(self, batch: list[tuple[str, int, str | None]]) -> None:
        rows = await self._sessions.messages_to(sorted({m for _, m, _ in batch}))
        # Keyed by session too: only a session's own messages are written to it (and a
        # contact with two sessions yields one row per session).
        found = {(r.id, r.public_id): r for r in rows}
        # One visitor's pushes stay in order; different visitors are written side by side.
        by_session: dict[str, list[tuple[SessionMessage, str | None]]] = {}
        for public_id, message_id, request in batch:
            row = found.get((message_id, public_id))
            if row is not None:
                by_session.setdefault(public_id, []).append((row, request))

        async def write(public_id: str, items: list[tuple[SessionMessage, str | None]]) -> None:
            for row, request in items:
                frame = protocol.server_message(row.id, sender=sender_of(row.direction, row.author), text=row.text,
                                                extra=row.extra, attachments=frames_of_files(row.files))
                taken = await self._local.push(public_id, frame)
                if taken:
                    self._count("delivered")
                    if request is not None:
                        self._notifier.publish(ACK_TOPIC, json.dumps({"r": request, "n": taken},
                                                                     separators=(",", ":")))

        await asyncio.gather(*(write(p, items) for p, items in by_session.items()))

    # --- presence ---------------------------------------------------------------------------------

    async def heartbeat(self) -> int:
        """Mark every session with a socket here as seen now; returns how many."""
        ids = {c.public_id for c in self._local.connections() if c.public_id is not None}
        await self._sessions.mark_seen(ids)
        return len(ids)

    def _count(self, event: str) -> None:
        if self._events is not None:
            self._events.labels(event).inc()
