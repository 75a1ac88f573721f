"""A running Service with console users, and an HTTP client that logs in like a browser
(cookies, the CSRF field of the page it last loaded)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from posventa.core.domain import ChannelName
from posventa.service import Service
from tests.support import RecordingChannel

PASSWORD = "correct horse battery staple"
#: For tests of the pages themselves: their storage is covered on PostgreSQL by the
#: tests left on both databases, and each PostgreSQL run costs a database clone.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ROLES = ("agent", "manager", "admin")
_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


@dataclass
class Running:
    service: Service
    #: Deliveries to customers' email, recorded at our Channel seam (None when the test
    #: runs the real SMTP channel into a sink instead).
    email: RecordingChannel | None
    base: str
    users: dict[str, str] = field(default_factory=dict)


async def start_console(service: Service, *, record_email: bool = True) -> Running:
    email = RecordingChannel(ChannelName.EMAIL) if record_email else None
    if email is not None:
        service.channels[ChannelName.EMAIL] = email
    await service.start()
    running = Running(service=service, email=email, base=f"http://127.0.0.1:{service.http.bound_port}")
    for role in ROLES:
        user = await service.console.users.create(f"{role}1", PASSWORD, role=role, display_name=f"{role.title()} One")
        running.users[role] = user.username
    return running


class ConsoleClient:
    """Talks to /console like a browser: keeps cookies and echoes the page's CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base
        # unsafe=True: aiohttp's jar ignores cookies from bare IP hosts otherwise.
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None
        self.last_text = ""

    async def __aenter__(self) -> ConsoleClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    def _remember(self, text: str) -> None:
        self.last_text = text
        match = _CSRF.search(text)
        if match:
            self.csrf = match.group(1)

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.http.get(self.base + path, **kw) as r:
            text = await r.text()
            self._remember(text)
            return r.status, text

    async def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
                   **kw: Any) -> tuple[int, str]:
        body = dict(data or {})
        if csrf:
            if self.csrf is None:
                await self.get("/console/inbox")
            body.setdefault("_csrf", self.csrf)
        async with self.http.post(self.base + path, data=body, **kw) as r:
            text = await r.text()
            self._remember(text)
            return r.status, text

    async def login(self, username: str, password: str = PASSWORD) -> tuple[int, str]:
        await self.get("/console/login")
        return await self.post("/console/login", {"username": username, "password": password})
