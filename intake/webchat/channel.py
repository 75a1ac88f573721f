"""The outbound side of the web chat: ``Channel.send`` for outbox channel ``webchat``.

A web chat reply is already a stored ``messages`` row when its outbox item is sent, so
"delivery" here is a push to the visitor's open sockets. Nobody connected is a transient
failure: the item stays in the outbox, and the reply is replayed from the history as soon
as the visitor reconnects (which also marks the item sent). Whether an agent's reply
that waited goes by email instead is core's routing policy (``core.reply_fallback``):
the channel asks it and reports the outcome.
"""

from __future__ import annotations

import logging

from posventa.core.domain import ChannelName, ClaimedDelivery
from posventa.core.errors import TransientDeliveryError
from posventa.core.reply_fallback import EmailFallback
from posventa.intake.webchat import protocol
from posventa.intake.webchat.hub import Hub

log = logging.getLogger(__name__)

#: How often an undelivered push is retried when no fallback is due: the real delivery
#: is the replay on reconnect, so retries only need to notice the email fallback time
#: (and, with several processes, a socket held by another process).
RETRY_SECONDS = 300.0


def frame_for(message: ClaimedDelivery) -> dict:
    extra: dict = {}
    if message.suggestions:
        extra["suggestions"] = [{"title": s.title, "url": s.url, "score": round(s.score, 1)}
                                for s in message.suggestions]
    if message.choices:
        extra["choices"] = [{"label": c.label, "value": c.value} for c in message.choices]
    if message.question:
        extra["question"] = message.question
    # Agents' replies are the only non-automatic messages; the bot writes everything else.
    sender = "bot" if message.automatic else "agent"
    # An agent's files: links the visitor's session reads with its token (GET /chat/files/{id}).
    files = [protocol.attachment(f.id, f.filename, f.content_type, f.size) for f in message.files if f.id is not None]
    return protocol.server_message(message.message_id or 0, sender=sender, text=message.text, extra=extra,
                                   attachments=files)


class WebchatChannel:
    name = ChannelName.WEBCHAT
    #: A push is a write into a local socket: claim many at once. With 50, the bot's
    #: greetings to 500 new chats took ten claims and ten records, each a write
    #: transaction an inbox batch waited behind (on SQLite, the one writer).
    claim_batch = 500

    def __init__(self, *, hub: Hub, fallback: EmailFallback, retry_seconds: float = RETRY_SECONDS) -> None:
        self._hub = hub
        self._fallback = fallback
        self._retry_seconds = retry_seconds

    async def send(self, message: ClaimedDelivery) -> str | None:
        if message.message_id is None:
            # Every web chat delivery is a stored message; without one there is nothing
            # the widget could dedupe or replay, so refuse loudly.
            raise TransientDeliveryError("web chat item has no message row", retry_after=self._retry_seconds)
        delivered = await self._hub.push(message.recipient, frame_for(message))
        if delivered:
            return f"webchat:{delivered}"
        return await self._undelivered(message)

    async def _undelivered(self, message: ClaimedDelivery) -> str:
        wait = await self._fallback.route(message, wait=self._retry_seconds)
        if wait is None:
            return "webchat:email-fallback"
        raise TransientDeliveryError("the visitor is not connected; the reply waits in the chat history",
                                     retry_after=wait)
