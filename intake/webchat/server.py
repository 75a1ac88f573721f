"""The web chat's HTTP side: ``/chat/ws`` (docs/webchat-protocol.md), the widget files, the demo page,
and the visitors' files (``/chat/files``, intake/webchat/uploads.py) where there is a store for them.

One websocket = one ``Connection``. The handler reads frames one at a time, so answers
(acks and errors) go back in the order the frames came, which the widget relies on.
A customer message is acknowledged only after ``Inbox.receive`` returns, i.e. after
commit; if the database is down the socket is closed with 1013 (try again later) and
no ack, and the widget resends the same client ids on its next connection.

Liveness is ours too, not aiohttp's: its heartbeat re-arms a timer on every frame
received, a cost per message; the watchdog instead pings a socket silent for
``heartbeat_seconds`` and drops it when half that passes without an answer.

Checks, in the order a stranger meets them: Origin (403 before the upgrade), a high
ceiling of connections per client address (an office or a mobile carrier puts many
customers behind one), a hello within ``hello_timeout_seconds``, the session token and
the session's open windows, then per frame: frames per second, size (``too_large``),
shape (``bad_request``) and the per-session, then per-address, message budgets
(``rate_limited``). ``max_rejected_frames`` error answers in a row close the socket
(1008): a client that only sends what is refused is not a customer.

The client address is ``ClientAddresses``' (intake/http.py): the forwarded one only
from a trusted proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import WSMessage, WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge

from posventa.core.config import WebchatConfig
from posventa.core.domain import ChannelName, ChoiceAnswer, InboundMessage
from posventa.core.errors import StorageUnavailable
from posventa.core.logs import log_fields, set_log_fields
from posventa.core.message_files import MessageFiles
from posventa.core.ports import Clock, Inbox
from posventa.core.tasks import Periodic
from posventa.core.uploads import UploadPolicy
from posventa.intake.http import ClientAddresses
from posventa.intake.webchat import assets, protocol
from posventa.intake.webchat.history import History
from posventa.intake.webchat.hub import Connection, LocalHub
from posventa.intake.webchat.limits import Limits, LimitSettings
from posventa.intake.webchat.origin import OriginPolicy
from posventa.intake.webchat.protocol import Hello, ProtocolError, SendChoice, SendText
from posventa.intake.webchat.sessions import Session, SessionStore
from posventa.intake.webchat.uploads import WebchatUploads

log = logging.getLogger(__name__)

#: Close handshake wait: a client that never answers our close must not hold a task.
CLOSE_TIMEOUT_SECONDS = 2.0
#: Wrong tokens tried on one connection before it is closed.
MAX_FAILED_HELLOS = 3
SWEEP_INTERVAL_SECONDS = 3600.0
#: How often the watchdog looks for idle sockets and stuck writes (see ``watch``).
WATCH_INTERVAL_SECONDS = 1.0

CLOSE_IDLE = 4000  # private range (4000-4999): "closed because idle"
CLOSE_NO_PONG = 4001  # "no answer to our ping": a dead peer (the widget reconnects if it was not)
CLOSE_POLICY = 1008
CLOSE_TRY_LATER = 1013

DEMO_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
            "img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class WebchatServer:
    """Routes and lifecycle (a service component: ``start``/``stop``)."""

    def __init__(self, *, config: WebchatConfig, public_url: str, inbox: Inbox, sessions: SessionStore,
                 history: History, hub: LocalHub, clock: Clock, monotonic: Callable[[], float] = time.monotonic,
                 registry: CollectorRegistry | None = None, client_addresses: ClientAddresses | None = None,
                 files: MessageFiles | None = None) -> None:
        self._cfg = config
        self._addresses = client_addresses or ClientAddresses()
        self._inbox = inbox
        self._sessions = sessions
        self._history = history
        self._hub = hub
        self._clock = clock
        self._origins = OriginPolicy(config.allowed_origins, public_url=public_url)
        self.limits = Limits(LimitSettings(
            messages_per_minute_per_session=config.messages_per_minute_per_session,
            messages_per_minute_per_ip=config.messages_per_minute_per_ip,
            new_sessions_per_minute_per_ip=config.new_sessions_per_minute_per_ip,
            frames_per_second_per_connection=config.frames_per_second_per_connection,
        ), clock=monotonic)
        self._per_ip: dict[str, int] = {}
        #: Files from visitors (``POST /chat/files``): where there is a store to keep them.
        policy = files.policy if files is not None else UploadPolicy.of(config.max_upload_bytes, config.upload_types)
        self._uploads: WebchatUploads | None = None
        self._upload_offer: dict[str, object] | None = None
        if files is not None and policy.enabled:
            self._uploads = WebchatUploads(policy=policy, inbox=inbox, sessions=sessions, hub=hub, files=files,
                                           origins=self._origins, limits=self.limits, addresses=self._addresses)
            self._upload_offer = {"max_bytes": policy.max_bytes, "types": sorted(policy.kinds)}
        #: Every open connection, said hello or not (the hub only knows the ones that did).
        self._live: set[Connection] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._sweeper = Periodic(name="webchat-sweeper", interval=SWEEP_INTERVAL_SECONDS, job=self._sweep,
                                 jitter=0.1, expected=(StorageUnavailable,))
        self._watchdog = Periodic(name="webchat-watchdog", interval=WATCH_INTERVAL_SECONDS, job=self._watch,
                                  run_at_start=False)
        #: Read by the service's /metrics.
        self.periodic_jobs = (self._sweeper, self._watchdog)
        #: Closes and pings the watchdog started (each in a task of its own, kept here).
        self._background_tasks: set[asyncio.Task[object]] = set()
        self._closing = False
        self._widget_js = assets.load_asset("widget.js", "application/javascript; charset=utf-8")
        self._widget_css = assets.load_asset("widget.css", "text/css; charset=utf-8")
        self._demo = assets.demo_page(prechat=config.prechat_form)
        # Big enough that an oversized frame is read and answered ``too_large``; past it
        # aiohttp closes with 1009 without buffering more.
        self._hard_frame_cap = max(4 * config.max_frame_bytes, 65_536)
        self._errors: Counter | None = None
        if registry is not None:
            Gauge("posventa_webchat_connections", "Open web chat websockets", registry=registry) \
                .set_function(lambda: len(self._hub.connections()))
            self._errors = Counter("posventa_webchat_errors", "Web chat error frames sent", ["code"],
                                   registry=registry)

    def install(self, app: web.Application) -> None:
        app.router.add_get("/chat/ws", self.websocket)
        app.router.add_get("/chat/widget.js", self._asset(self._widget_js))
        app.router.add_get("/chat/widget.css", self._asset(self._widget_css))
        app.router.add_get("/chat/", self._demo_page)
        app.router.add_get("/chat", self._to_demo)
        if self._uploads is not None:
            self._uploads.install(app)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._closing = False
        if self._cfg.abandoned_session_hours > 0:
            await self._sweeper.start()
        await self._watchdog.start()

    async def stop(self) -> None:
        """Close every socket (1001, going away: the widget reconnects to whoever serves next)."""
        self._closing = True
        await self._sweeper.stop()
        await self._watchdog.stop()
        conns = list(self._live)
        await asyncio.gather(*(c.close(code=1001, reason="server restart") for c in conns),
                             return_exceptions=True)
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=CLOSE_TIMEOUT_SECONDS + 1)

    async def sweep(self) -> int:
        connected = {c.public_id for c in self._live if c.public_id is not None}
        return await self._sessions.sweep_abandoned(older_than=timedelta(hours=self._cfg.abandoned_session_hours),
                                                    keep=connected)

    def watch(self, now: float) -> int:
        """Drop the sockets idle past ``idle_timeout_seconds`` (once they said hello; before,
        the hello timeout applies to each read), those whose client stopped reading, and
        those that did not answer a ping within half of ``heartbeat_seconds``; ping those
        silent for ``heartbeat_seconds``. Returns how many it drops.

        Per-read and per-write timeouts did the same with a timer per frame (and a task
        per write): at hundreds of messages a second, more work than the frames. Here
        one check a second covers every connection, so a limit may be overshot by up to
        ``WATCH_INTERVAL_SECONDS``."""
        idle_after = self._cfg.idle_timeout_seconds
        heartbeat = self._cfg.heartbeat_seconds
        dropped = 0
        for conn in list(self._live):
            if conn.closed_reason is not None:
                continue
            heard = max(conn.last_frame_at, conn.last_pong_at)
            if conn.stuck(now):
                log.info("web chat: dropping a client that does not read (session %s)", conn.public_id)
                self._drop(conn, code=CLOSE_POLICY, reason="too slow")
            elif conn.public_id is not None and now - conn.last_frame_at > idle_after:
                self._drop(conn, code=CLOSE_IDLE, reason="idle")
            elif conn.ping_sent_at is not None and heard < conn.ping_sent_at:
                if now - conn.ping_sent_at <= heartbeat / 2:
                    continue
                self._drop(conn, code=CLOSE_NO_PONG, reason="no pong")
            elif now - heard > heartbeat:
                conn.ping_sent_at = now
                self._background(conn.ping(), name="webchat-ping")
                continue
            else:
                conn.ping_sent_at = None
                continue
            dropped += 1
        return dropped

    def _drop(self, conn: Connection, *, code: int, reason: str) -> None:
        # Its own task: closing waits for the client (up to the close timeout, longer for
        # a stuck one), and the watchdog must not wait with it.
        self._background(conn.close(code=code, reason=reason), name="webchat-drop")

    def _background(self, work: Coroutine[object, object, object], *, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    async def _watch(self) -> None:
        self.watch(time.monotonic())

    async def _sweep(self) -> None:
        removed = await self.sweep()
        if removed:
            log.info("web chat: removed %d abandoned sessions", removed)

    # --- static ------------------------------------------------------------------------------

    @staticmethod
    def _asset(asset: assets.Asset):
        async def handler(request: web.Request) -> web.Response:
            # Any site may load the script (that is the point of a widget); the websocket
            # is where the Origin policy applies.
            return assets.respond(request, asset, extra_headers={"Cross-Origin-Resource-Policy": "cross-origin"})

        return handler

    async def _demo_page(self, request: web.Request) -> web.Response:
        return assets.respond(request, self._demo, cache_control="no-cache",
                              extra_headers={"Content-Security-Policy": DEMO_CSP, "X-Frame-Options": "DENY"})

    async def _to_demo(self, _request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect("/chat/")

    # --- the websocket -----------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        # Lines logged while serving this socket say so (and which case, once known).
        with log_fields(channel=ChannelName.WEBCHAT.value):
            return await self._websocket(request)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            raise web.HTTPServiceUnavailable(text="restarting")
        if not self._origins.allows(request.headers.get("Origin")):
            log.info("web chat: refused origin %r", request.headers.get("Origin", "")[:200])
            raise web.HTTPForbidden(text="origin not allowed")
        ip = self._addresses.of(request)
        if self._per_ip.get(ip, 0) >= self._cfg.max_connections_per_ip:
            log.info("web chat: refused a connection from %s: %d already open", ip, self._per_ip[ip])
            raise web.HTTPTooManyRequests(text="too many connections")
        # No aiohttp heartbeat and no autoping: pings and pongs are ours (see ``watch``).
        ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT_SECONDS, autoping=False, compress=False,
                                   max_msg_size=self._hard_frame_cap)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="expected a websocket upgrade")
        await ws.prepare(request)
        conn = Connection(ws, ip, now=time.monotonic())
        self._live.add(conn)
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        session: Session | None = None
        try:
            session = await self._serve(conn)
        except StorageUnavailable:
            await conn.close(code=CLOSE_TRY_LATER, reason="storage unavailable, retry")
        except Exception:
            log.exception("web chat: connection failed")
            await conn.close(code=1011, reason="internal error")
        finally:
            self._live.discard(conn)
            if conn.public_id is not None:
                self._hub.detach(conn.public_id, conn)
            left = self._per_ip.get(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)
            if task is not None:
                self._handlers.discard(task)
            self.limits.frames.forget(_conn_key(conn))
        if session is not None:
            # Seen until now: the sweeper only removes sessions idle for a long time.
            with contextlib.suppress(StorageUnavailable):
                await self._sessions.touch(session.id)
        return ws

    async def _serve(self, conn: Connection) -> Session | None:
        ws = conn.ws
        state = _ServeState()
        while True:
            if state.session is None:
                try:
                    msg = await ws.receive(timeout=self._cfg.hello_timeout_seconds)
                except TimeoutError:
                    await conn.close(code=CLOSE_IDLE, reason="no hello")
                    return state.session
            else:
                # No timeout per read once there is a session: the watchdog closes idle
                # sockets (``watch``), and this read then ends with the close.
                msg = await ws.receive()
            if msg.type == WSMsgType.PING:  # answered, as aiohttp's autoping would; not activity
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.pong(msg.data)
                continue
            if msg.type == WSMsgType.PONG:  # alive, though maybe idle
                conn.last_pong_at = time.monotonic()
                continue
            conn.last_frame_at = time.monotonic()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return state.session
            if msg.type == WSMsgType.ERROR:
                return state.session  # aiohttp already closed it (1009 for a frame past the hard cap)
            errors_before = conn.errors_sent
            await self._frame(conn, msg, state)
            if state.session is None and state.failed_hellos >= MAX_FAILED_HELLOS:
                await conn.close(code=CLOSE_POLICY, reason="unauthorized")
                return None
            # Any frame answered with an error is rejected; any other one resets the count.
            state.rejected_in_a_row = state.rejected_in_a_row + 1 if conn.errors_sent > errors_before else 0
            if state.rejected_in_a_row >= self._cfg.max_rejected_frames:
                log.info("web chat: closing a connection from %s after %d rejected frames in a row (session %s)",
                         conn.ip, state.rejected_in_a_row, conn.public_id)
                await conn.close(code=CLOSE_POLICY, reason="too many rejected frames")
                return state.session

    async def _frame(self, conn: Connection, msg: WSMessage, state: _ServeState) -> None:
        """One data frame: answered with an ack, a welcome or an error (``_error``)."""
        if self.limits.frames.allow(_conn_key(conn)):
            await self._error(conn, protocol.RATE_LIMITED, "too many frames")
            return
        if msg.type != WSMsgType.TEXT:
            await self._error(conn, protocol.BAD_REQUEST, "frames must be JSON text")
            return
        data: str = msg.data
        if len(data) > self._cfg.max_frame_bytes and len(data.encode("utf-8", "surrogatepass")) > \
                self._cfg.max_frame_bytes:
            await self._error(conn, protocol.TOO_LARGE, f"frames are limited to {self._cfg.max_frame_bytes} bytes")
            return
        try:
            frame = protocol.parse_frame(data, max_text_chars=self._cfg.max_text_chars)
            if isinstance(frame, Hello):
                if state.session is not None:
                    raise ProtocolError(protocol.BAD_REQUEST, "this connection already said hello")
                state.session = await self._hello(conn, frame)
                if state.session is None:
                    state.failed_hellos += 1
            elif state.session is None:
                raise ProtocolError(protocol.UNAUTHORIZED, "say hello with a session first", client_id=frame.id)
            else:
                await self._customer_message(conn, state.session, frame)
        except ProtocolError as exc:
            await self._error(conn, exc.code, str(exc), client_id=exc.client_id)
            if exc.code == protocol.UNAUTHORIZED:
                state.failed_hellos += 1

    async def _error(self, conn: Connection, code: str, message: str, *, client_id: str | None = None,
                     retry_after: float | None = None) -> None:
        conn.errors_sent += 1
        if self._errors is not None:
            self._errors.labels(code).inc()
        await conn.send(protocol.error(code, message, client_id=client_id, retry_after=retry_after))

    async def _hello(self, conn: Connection, hello: Hello) -> Session | None:
        if hello.session is None:
            wait = self.limits.new_session.allow(conn.ip)
            if wait:
                await self._error(conn, protocol.RATE_LIMITED, "too many new chats from this address",
                                  retry_after=wait)
                # Closing makes the widget come back after its reconnect backoff; an open
                # socket without a session would just sit there until the hello timeout.
                await conn.close(code=CLOSE_TRY_LATER, reason="too many new chats")
                return None
            token, session = await self._sessions.create(language=hello.lang, name=hello.name, email=hello.email)
        else:
            token = hello.session
            found = await self._sessions.resume(token, language=hello.lang, name=hello.name, email=hello.email)
            if found is None:
                # Wrong tokens cost like new sessions, so guessing is throttled per address.
                self.limits.new_session.allow(conn.ip)
                await self._error(conn, protocol.UNAUTHORIZED, "unknown or expired session")
                return None
            session = found
        if self._hub.count(session.public_id) >= self._cfg.max_connections_per_session:
            await self._error(conn, protocol.RATE_LIMITED, "too many chat windows open for this session")
            await conn.close(code=CLOSE_POLICY, reason="too many windows")
            return None
        # Attach before reading the history: a reply committed meanwhile is held by the
        # connection until the replay is written, so it is neither lost nor out of order.
        self._hub.attach(session.public_id, conn)
        case = await self._inbox.open_case_of(session.contact_id)
        await conn.send(protocol.welcome(token, case, upload=self._upload_offer))
        frames = await self._history.replay(session, hello.last_seen, now=self._clock.now(),
                                            mark_delivered=self._hub.count(session.public_id) == 1)
        for frame in frames:
            await conn.send(frame)
        await conn.finish_replay({f["message_id"] for f in frames})
        return dataclasses.replace(session, timezone=hello.tz) if hello.tz else session

    async def _customer_message(self, conn: Connection, session: Session, frame: SendText | SendChoice) -> None:
        wait = self.limits.message(session.public_id, conn.ip)
        if wait:
            await self._error(conn, protocol.RATE_LIMITED, "too many messages; slow down", client_id=frame.id,
                              retry_after=wait)
            return
        choice = None
        if isinstance(frame, SendChoice):
            choice = ChoiceAnswer(frame.question, frame.value)
            text = await self._history.choice_label(session, frame.question, frame.value) or frame.value
        else:
            text = frame.text
        # The client id is namespaced by the session: ids are unique per (channel,
        # external_id), and a bare id copied from another visitor must not return their ack.
        receipt = await self._inbox.receive(InboundMessage(
            channel=ChannelName.WEBCHAT, external_id=f"{session.public_id}:{frame.id}", sender=session.public_id,
            text=text, sender_name=session.name, language=session.language, choice=choice,
            meta={"timezone": session.timezone} if session.timezone else {},
        ))
        set_log_fields(case=receipt.case_number)
        await conn.send(protocol.ack(frame.id, receipt.message_id, receipt.case_number))


@dataclass(slots=True)
class _ServeState:
    """What one connection's read loop keeps between frames."""

    session: Session | None = None
    failed_hellos: int = 0
    rejected_in_a_row: int = 0


def _conn_key(conn: Connection) -> str:
    # id() is unique while the connection lives, and its bucket is forgotten when it closes.
    return f"conn:{id(conn)}"
