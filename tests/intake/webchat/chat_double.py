"""A scripted double of the web chat server's far side, for driving the real widget.

It serves ``intake/webchat/static`` under ``/chat/`` and speaks the ``/chat/ws`` protocol of
docs/webchat-protocol.md with in-memory sessions: hello → welcome + history after ``last_seen``, message
and choice frames → one ack per client id (the same id again gets the same ack and stores
nothing). Tests push agent/bot messages, invalidate sessions and take the server offline.

Two listening sockets on different ports give two origins: ``widget_origin`` (static files
and websocket, like support.example.com) and ``shop_origin`` (a host page that embeds the
widget by absolute URL, like a customer's shop). That is how the widget is really used.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

STATIC_DIR = Path(__file__).resolve().parents[3] / "intake" / "webchat" / "static"

Frame = dict[str, Any]


@dataclass
class _Session:
    token: str
    case: int
    history: list[Frame] = field(default_factory=list)
    acks: dict[str, Frame] = field(default_factory=dict)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)


class ChatDouble:
    """Start with ``async with ChatDouble() as chat:``; see the module docstring."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []  # every client frame received, in order
        self.refused = 0  # websocket upgrades refused while offline
        self.online = True
        # Commit but lose the ack, as when the connection drops right after the server's
        # commit: the widget must resend with the same id and the server store it once.
        self.drop_acks = False
        # Answer the next message/choice frame with this error code instead of storing it.
        self.reject_next: str | None = None
        # Answer even a hello without a session with "unauthorized" (e.g. chat disabled).
        self.refuse_new_sessions = False
        self._sessions: dict[str, _Session] = {}
        self._ids = itertools.count(100)
        self._tokens = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.widget_origin = ""
        self.shop_origin = ""

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> ChatDouble:
        app = web.Application()
        app.router.add_get("/chat/ws", self._ws)
        app.router.add_get("/shop.html", self._shop_page)
        app.router.add_static("/chat/", STATIC_DIR)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        origins = []
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            await web.SockSite(self._runner, sock).start()
            origins.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
        self.widget_origin, self.shop_origin = origins
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_all_sockets()
        assert self._runner is not None
        await self._runner.cleanup()

    # -- what the tests call --------------------------------------------------------------

    def shop_url(self, *, lang: str | None = "es", prechat: bool = False, in_head: bool = False, copies: int = 1) -> str:
        """The shop page; ``in_head`` puts the snippet in <head>, ``copies`` pastes it n times."""
        query = [f"copies={copies}"]
        if lang is not None:
            query.append(f"lang={lang}")
        if prechat:
            query.append("prechat=true")
        if in_head:
            query.append("head=true")
        return f"{self.shop_origin}/shop.html?{'&'.join(query)}"

    def sent(self, kind: str) -> list[Frame]:
        return [f for f in self.frames if f.get("type") == kind]

    def session_tokens(self) -> list[str]:
        return list(self._sessions)

    def history_texts(self, token: str) -> list[str]:
        return [m["text"] for m in self._sessions[token].history]

    async def wait_for(self, predicate: Callable[[ChatDouble], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate(self)`` is truthy (re-checked on every frame/connection)."""
        async with asyncio.timeout(timeout):
            while not (result := predicate(self)):
                self._changed.clear()
                await self._changed.wait()
        return result

    async def wait_for_frames(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[Frame]:
        return await self.wait_for(lambda d: d.sent(kind) if len(d.sent(kind)) >= count else None, timeout)

    async def push(self, token: str, *, sender: str = "agent", text: str, **extra: Any) -> int:
        """Store a server message in the session's history and send it to its open sockets."""
        session = self._sessions[token]
        frame: Frame = {"type": "message", "message_id": next(self._ids), "from": sender, "text": text, **extra}
        session.history.append(frame)
        for ws in list(session.sockets):
            await ws.send_json(frame)
        return frame["message_id"]

    async def send_raw(self, token: str, frame: Frame) -> None:
        """Send any frame without storing it."""
        await self.send_text(token, json.dumps(frame))

    def ack_for(self, token: str, client_id: str) -> Frame:
        return self._sessions[token].acks[client_id]

    async def send_text(self, token: str, text: str) -> None:
        """Send a raw text frame (malformed JSON, wrong shapes) without storing it."""
        for ws in list(self._sessions[token].sockets):
            await ws.send_str(text)

    def forget(self, token: str) -> None:
        """Drop a session, as an expiry would: its next hello gets ``unauthorized``."""
        del self._sessions[token]

    async def go_offline(self) -> None:
        """Close every websocket and refuse new ones until ``go_online``."""
        self.online = False
        await self.close_all_sockets()

    def go_online(self) -> None:
        self.online = True

    async def close_all_sockets(self) -> None:
        for session in self._sessions.values():
            for ws in list(session.sockets):
                await ws.close()

    # -- the server side ------------------------------------------------------------------

    async def _shop_page(self, request: web.Request) -> web.Response:
        attrs = ""
        if "lang" in request.query:
            attrs += f' data-lang="{html.escape(request.query["lang"])}"'
        if request.query.get("prechat") == "true":
            attrs += ' data-prechat="true"'
        snippet = f'<script src="{self.widget_origin}/chat/widget.js"{attrs}></script>' * int(request.query["copies"])
        in_head = request.query.get("head") == "true"
        body = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Shop</title>"
            f"{snippet if in_head else ''}</head><body><h1>Shop</h1><p>Products.</p>"
            f"{'' if in_head else snippet}</body></html>"
        )
        return web.Response(text=body, content_type="text/html")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if not self.online:
            self.refused += 1
            self._notify()
            return web.Response(status=503, text="offline")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session: _Session | None = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                self.frames.append(frame)
                if frame.get("type") == "hello":
                    session = await self._hello(ws, frame)
                elif session is not None and frame.get("type") in ("message", "choice"):
                    await self._store(ws, session, frame)
                self._notify()
        finally:
            if session is not None:
                session.sockets.discard(ws)
            self._notify()
        return ws

    async def _hello(self, ws: web.WebSocketResponse, frame: Frame) -> _Session | None:
        token = frame.get("session")
        if (token is None and self.refuse_new_sessions) or (token is not None and token not in self._sessions):
            await ws.send_json({"type": "error", "code": "unauthorized", "message": "unknown session"})
            return None
        if token is None:
            token = f"tok-{next(self._tokens)}"
            self._sessions[token] = _Session(token=token, case=len(self._sessions) + 1)
        session = self._sessions[token]
        session.sockets.add(ws)
        await ws.send_json({"type": "welcome", "session": token, "case": session.case})
        last_seen = frame.get("last_seen")
        replay = session.history
        if last_seen is not None:
            replay = [m for m in session.history if m["message_id"] > last_seen]
        for message in replay:
            await ws.send_json(message)
        return session

    async def _store(self, ws: web.WebSocketResponse, session: _Session, frame: Frame) -> None:
        if self.reject_next is not None:
            code, self.reject_next = self.reject_next, None
            await ws.send_json({"type": "error", "code": code, "message": code})
            return
        client_id = frame["id"]
        if client_id not in session.acks:
            message_id = next(self._ids)
            if frame["type"] == "message":
                session.history.append(
                    {"type": "message", "message_id": message_id, "from": "customer", "text": frame["text"]}
                )
            session.acks[client_id] = {"type": "ack", "id": client_id, "message_id": message_id, "case": session.case}
        if not self.drop_acks:
            await ws.send_json(session.acks[client_id])

    def _notify(self) -> None:
        self._changed.set()
