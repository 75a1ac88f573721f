"""A small web chat client for tests and the benchmark: speaks docs/webchat-protocol.md over a real
websocket, and collects every frame the server sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

Frame = dict[str, Any]


class ChatClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self.session: str | None = None
        self.case: int | None = None

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, base: str, **kw: Any) -> ChatClient:
        return cls(await http.ws_connect(f"{base}/chat/ws", **kw))

    async def hello(self, session: str | None = None, last_seen: int | None = None, lang: str = "es",
                    **extra: Any) -> Frame:
        await self.send({"type": "hello", "session": session, "last_seen": last_seen, "lang": lang, **extra})
        welcome = await self.next(lambda f: f["type"] in ("welcome", "error"))
        if welcome["type"] == "welcome":
            self.session, self.case = welcome["session"], welcome["case"]
        return welcome

    async def send(self, frame: Frame) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def say(self, client_id: str, text: str) -> Frame:
        """Send a message and return its ack (or the error that answered it)."""
        await self.send({"type": "message", "id": client_id, "text": text})
        return await self.answer(client_id)

    async def answer(self, client_id: str) -> Frame:
        return await self.next(lambda f: f["type"] in ("ack", "error") and f.get("id") in (client_id, None))

    async def next(self, predicate: Callable[[Frame], bool], timeout: float = 10.0) -> Frame:
        """The next frame (not yet consumed by another ``next``) matching ``predicate``."""
        for i, frame in enumerate(self.frames):
            if predicate(frame):
                return self.frames.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket ended: {msg.type.name} {self.ws.close_code}")
                frame = json.loads(msg.data)
                if predicate(frame):
                    return frame
                self.frames.append(frame)

    async def messages_until(self, predicate: Callable[[Frame], bool], timeout: float = 10.0) -> list[Frame]:
        """Consume every server ``message`` frame up to and including the first one
        matching ``predicate``; other frames stay for ``next``."""
        seen: list[Frame] = []
        for frame in [f for f in self.frames if f["type"] == "message"]:
            self.frames.remove(frame)
            seen.append(frame)
            if predicate(frame):
                return seen
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket ended: {msg.type.name} {self.ws.close_code}")
                frame = json.loads(msg.data)
                if frame["type"] != "message":
                    self.frames.append(frame)
                    continue
                seen.append(frame)
                if predicate(frame):
                    return seen

    async def closed(self, timeout: float = 10.0) -> int | None:
        """Wait for the server to close the socket; returns the close code."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return self.ws.close_code
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.frames.append(json.loads(msg.data))

    async def close(self) -> None:
        await self.ws.close()
