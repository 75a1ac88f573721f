"""Routing policy: which channel an undelivered reply falls back to.

A web chat reply is "delivered" by a push to the visitor's open sockets; nobody
connected is a transient failure, and the reply waits in the chat history. If the
visitor left an email address and an agent's reply has waited ``after`` seconds, it is
queued once by email instead, so a closed tab never means an unanswered customer. Bot
messages (automatic) never fall back: they are not worth an email.

This is core's decision, not the web chat's: the adapter asks ``route`` when a push
found nobody, and either retries later or reports the reply gone by email.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from posventa.core.domain import AttachmentRef, Author, ChannelName, ClaimedDelivery
from posventa.core.outgoing import ComposedMessage, Outgoing, Recipient
from posventa.core.persistence import Database
from posventa.core.persistence.schema import cases, outbox, webchat_sessions
from posventa.core.ports import Clock

log = logging.getLogger(__name__)


class EmailFallback:
    """``after``: seconds an agent's chat reply waits before it goes by email (None: never)."""

    def __init__(self, *, db: Database, outgoing: Outgoing, clock: Clock, on_commit: Callable[[], None],
                 after: float | None) -> None:
        self._db = db
        self._outgoing = outgoing
        self._clock = clock
        self._on_commit = on_commit
        self._after = after

    async def route(self, message: ClaimedDelivery, *, wait: float) -> float | None:
        """For a web chat reply nobody received: None when it was queued by email now,
        else the seconds to wait before trying the chat again (at most ``wait``, sooner when
        the fallback falls due first)."""
        if self._after is None or message.automatic:
            return wait
        async with self._db.reading() as conn:
            created = (await conn.execute(select(outbox.c.created_at)
                                          .where(outbox.c.id == message.outbox_id))).scalar()
            session = (await conn.execute(select(webchat_sessions.c.email, webchat_sessions.c.contact_id)
                                          .where(webchat_sessions.c.public_id == message.recipient))).first()
        if session is None or not session.email or created is None:
            return wait
        due = created + timedelta(seconds=self._after)
        now = self._clock.now()
        if now >= due:
            await self._queue_email(message, session.email, session.contact_id)
            return None
        return max(1.0, min(wait, (due - now).total_seconds()))

    async def _queue_email(self, message: ClaimedDelivery, address: str, contact_id: int) -> None:
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
                # The agent's files go along, as attachments of the email.
                files=tuple(AttachmentRef(f.filename, f.content_type, f.size, f.sha256) for f in message.files),
            )], now=now)
        log.info("web chat reply on case %s went by email: the visitor was away", message.case_number)
        self._on_commit()
