"""The outbound side of the web chat: ``Channel.send`` for outbox channel ``webchat``.

A web chat reply is already a stored ``messages`` row when its outbox item is sent, so
"delivery" here is a push to the visitor's open sockets. Nobody connected is a transient
failure: the item stays in the outbox, and the reply is replayed from the history as soon
as the visitor reconnects (which also marks the item sent). If the visitor left an email
address and an agent's reply has waited ``email_fallback_after`` seconds, it is queued
once by email instead, so a closed tab never means an unanswered customer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from core.domain import Author, ChannelName, ClaimedDelivery
from core.errors import TransientDeliveryError
from core.outgoing import Outgoing, ComposedMessage, Recipient
from core.persistence import Database
from core.persistence.schema import cases, outbox, webchat_sessions
from core.ports import Clock
from intake.webchat import protocol
from intake.webchat.hub import Hub
from intake.webchat.sessions import reading

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
    return protocol.server_message(message.message_id or 0, sender=sender, text=message.text, extra=extra)


class WebchatChannel:
    name = ChannelName.WEBCHAT
    #: A push is a write into a local socket: claim many at once. With 50, the bot's
    #: greetings to 500 new chats took ten claims and ten records, each a write
    #: transaction an inbox batch waited behind (on SQLite, the one writer).
    claim_batch = 500

    def __init__(self, *, hub: Hub, db: Database, outgoing: Outgoing, clock: Clock,
                 on_commit: Callable[[], None], email_fallback_after: float | None,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self._hub = hub
        self._db = db
        self._outgoing = outgoing
        self._clock = clock
        self._on_commit = on_commit
        self._fallback_after = email_fallback_after
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
        wait = self._retry_seconds
        if self._fallback_after is not None and not message.automatic:
            async with reading(self._db) as conn:
                created = (await conn.execute(select(outbox.c.created_at)
                                              .where(outbox.c.id == message.outbox_id))).scalar()
                session = (await conn.execute(select(webchat_sessions.c.email, webchat_sessions.c.contact_id)
                                              .where(webchat_sessions.c.public_id == message.recipient))).first()
            if session is not None and session.email and created is not None:
                due = created + timedelta(seconds=self._fallback_after)
                now = self._clock.now()
                if now >= due:
                    await self._fallback_by_email(message, session.email, session.contact_id)
                    return "webchat:email-fallback"
                wait = max(1.0, min(wait, (due - now).total_seconds()))
        raise TransientDeliveryError("the visitor is not connected; the reply waits in the chat history",
                                     retry_after=wait)

    async def _fallback_by_email(self, message: ClaimedDelivery, address: str, contact_id: int) -> None:
        now = self._clock.now()
        async with self._db.transaction() as conn:
            # Once: the webchat item is leased by this worker, and the marker below makes
            # a retry after a crash between commit and the worker's bookkeeping harmless.
            marker = str(message.outbox_id)
            for (payload,) in (await conn.execute(
                    select(outbox.c.payload).where(outbox.c.channel == ChannelName.EMAIL.value,
                                                   outbox.c.recipient == address,
                                                   outbox.c.case_id == message.case_number))).all():
                if isinstance(payload, dict) and (payload.get("extra") or {}).get("webchat_outbox_id") == marker:
                    return
            reply_token = None
            if message.case_number is not None:
                reply_token = (await conn.execute(select(cases.c.reply_token)
                                                  .where(cases.c.id == message.case_number))).scalar()
            await self._outgoing.add(conn, [ComposedMessage(
                recipient=Recipient(ChannelName.EMAIL, address, None, contact_id),
                text=message.text, kind="reply", case_id=message.case_number, case_title=message.case_title,
                author=Author.AGENT, language=message.language, automatic=False, reply_token=reply_token,
                extra={"webchat_outbox_id": marker},
            )], now=now)
        log.info("web chat reply on case %s went by email: the visitor was away", message.case_number)
        self._on_commit()
