"""One socket's writes: order, and the stuck-client signal the server's watchdog reads."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import WSMsgType

from posventa.intake.webchat.hub import SEND_TIMEOUT_SECONDS, Connection


class _SlowSocket:
    """Stands in for aiohttp's WebSocketResponse: records frames as they are written and,
    like a full transport buffer, waits for ``drained`` after writing."""

    def __init__(self) -> None:
        self.written: list[dict] = []
        self.drained = asyncio.Event()
        self.closed = False

    async def send_frame(self, data: bytes, opcode: WSMsgType) -> None:
        assert opcode == WSMsgType.TEXT
        self.written.append(json.loads(data))
        await self.drained.wait()


async def test_writes_keep_call_order_and_a_waiting_write_marks_the_socket_stuck():
    ws = _SlowSocket()
    conn = Connection(ws, "127.0.0.1")  # type: ignore[arg-type]
    conn._replaying = False
    later = time.monotonic() + SEND_TIMEOUT_SECONDS + 1
    assert not conn.stuck(later)
    first = asyncio.create_task(conn.push({"n": 1}))
    second = asyncio.create_task(conn.push({"n": 2}))
    await asyncio.sleep(0)
    # Both frames are written in call order, neither write has finished.
    assert ws.written == [{"n": 1}, {"n": 2}]
    assert conn.stuck(later) and not conn.stuck(time.monotonic())
    ws.drained.set()
    assert await first and await second
    assert not conn.stuck(later)
    assert await conn.send({"n": 3}) and ws.written[-1] == {"n": 3} and not conn.stuck(later)
