"""``POST /kb/discourse/webhook``: Discourse tells us a topic changed.

The signature is checked before anything else; a forged delivery gets 403 and a log line.
We answer at once and re-fetch the topic in the background: Discourse's copy in the payload
is not trusted, and the periodic sync covers a refresh that fails.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from posventa.kb.sync import KbSync
from posventa.kb.webhook_signature import InvalidWebhook, WebhookKind, parse_webhook, verify_webhook_signature

log = logging.getLogger(__name__)
PATH = "/kb/discourse/webhook"


class KbWebhook:
    def __init__(self, *, sync: KbSync, secret: str) -> None:
        self._sync = sync
        self._secret = secret
        self._tasks: set[asyncio.Task[None]] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_webhook_signature(self._secret, body, request.headers.get("X-Discourse-Event-Signature")):
            log.warning("Discourse webhook with a bad or missing signature from %s", request.remote)
            return web.json_response({"error": "forbidden", "message": "bad signature"}, status=403)
        try:
            event = parse_webhook(request.headers.get("X-Discourse-Event"), body)
        except InvalidWebhook as exc:
            return web.json_response({"error": "bad_request", "message": str(exc)}, status=400)
        if event is None:
            return web.json_response({"status": "ignored"})
        task = asyncio.create_task(self._apply(event.kind, event.topic_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response({"status": "accepted"})

    async def _apply(self, kind: WebhookKind, topic_id: int) -> None:
        try:
            if kind == WebhookKind.TOPIC_DESTROYED:
                await self._sync.remove_topic(topic_id)
            else:
                await self._sync.refresh_topic(topic_id)
        except Exception as exc:  # the periodic sync will catch up
            log.warning("KB refresh of topic %s after webhook failed: %s", topic_id, type(exc).__name__)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
