"""Webhook mode: Telegram POSTs each update to ``/telegram/webhook`` on our aiohttp server.

The transport hook stays thin: check the secret Telegram echoes (constant time), parse,
hand the update to the router, and answer 200 only once it is stored. Anything that was
not stored answers 5xx, so Telegram delivers it again (it retries non-2xx answers); the
handlers dedupe the second copy.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from posventa.bots.telegram.client import RetryLater
from posventa.core.errors import StorageUnavailable

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: What Telegram accepts as secret_token in setWebhook.
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
MAX_UPDATE_BYTES = 1_000_000


class WebhookEndpoint:
    def __init__(self, *, secret: str, handle: Callable[[dict[str, Any]], Awaitable[None]],
                 ready: Callable[[], bool]) -> None:
        self._secret = secret.encode()
        self._handle = handle
        self._ready = ready
        self.rejected = 0

    def install(self, app: web.Application) -> None:
        app.router.add_post(WEBHOOK_PATH, self.receive)

    async def receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            self.rejected += 1
            return web.json_response({"ok": False, "error": "forbidden"}, status=403)
        if not self._ready():
            return web.json_response({"ok": False, "error": "starting"}, status=503)
        if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
            return web.json_response({"ok": False, "error": "too large"}, status=413)
        try:
            body = await request.content.read(MAX_UPDATE_BYTES + 1)
            if len(body) > MAX_UPDATE_BYTES:
                return web.json_response({"ok": False, "error": "too large"}, status=413)
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." (was a 500)
            return web.json_response({"ok": False, "error": "not a JSON update"}, status=400)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return web.json_response({"ok": False, "error": "not an update"}, status=400)
        try:
            await self._handle(data)
        except (StorageUnavailable, RetryLater) as exc:
            log.warning("telegram webhook: update %s not stored yet (%s)", data["update_id"], exc)
            return web.json_response({"ok": False, "error": "try again"}, status=503)
        return web.json_response({"ok": True})
