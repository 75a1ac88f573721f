"""A capturing SMTP server standing in for the company's outbound relay.

It speaks real SMTP (aiosmtpd) on a random loopback port; tests read what "reached the
customer" from ``messages``, and can make it answer 4xx/5xx or go away.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP


@dataclass(frozen=True)
class Captured:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list[Captured] = []
        #: Answer the next DATA commands with these replies instead of 250.
        self.replies: list[str] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._event = asyncio.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.replies:
            return self.replies.pop(0)
        self.messages.append(Captured(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.original_content))
        self._event.set()
        return "250 2.0.0 queued"

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self, enable_SMTPUTF8=True), "127.0.0.1", port or self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Captured]:
        async def wait() -> None:
            while len(self.messages) < count:
                self._event.clear()
                await self._event.wait()

        await asyncio.wait_for(wait(), timeout)
        return self.messages
