"""A session's conversation as the widget shows it, read through core's ``ChatHistory``.

Every web chat message, both ways, is a ``messages`` row of the session's contact on
channel ``webchat`` (outbound ones are written by ``Outgoing.add`` with their outbox
item). So a reconnect replays from the database, and nothing depends on the socket that
happened to be open when a reply was committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from posventa.core import Database
from posventa.core.chat_history import ChatHistory, ChatLine
from posventa.core.domain import Author, ChannelName, Direction
from posventa.core.message_files import StoredFile
from posventa.core.outbox import Outbox
from posventa.intake.webchat import protocol
from posventa.intake.webchat.sessions import Session


def sender_of(direction: str, author: str) -> str:
    if direction == Direction.IN.value:
        return "customer"
    return "agent" if author == Author.AGENT.value else "bot"


def frames_of_files(files: Sequence[StoredFile]) -> list[dict[str, Any]]:
    """A message's files as frames carry them."""
    return [protocol.attachment(f.id, f.filename, f.content_type, f.size) for f in files]


def frame_of(line: ChatLine, session: Session) -> dict[str, Any]:
    client_id = None
    if line.direction == Direction.IN.value and line.external_id:
        prefix, _, rest = line.external_id.partition(":")
        client_id = rest if prefix == session.public_id and rest else None
    return protocol.server_message(line.id, sender=sender_of(line.direction, line.author), text=line.text,
                                   extra=line.extra, client_id=client_id, attachments=frames_of_files(line.files))


class History:
    def __init__(self, *, db: Database, limit: int) -> None:
        self._history = ChatHistory(db=db)
        self._outbox = Outbox(db=db)
        self._limit = limit

    async def replay(self, session: Session, last_seen: int | None, *, now: datetime,
                     mark_delivered: bool) -> list[dict[str, Any]]:
        """Frames for what the client has not seen: every message after ``last_seen``
        (the newest ``limit`` of the whole history when None), plus any reply still
        undelivered in the outbox even if its id is older (ids can commit out of order).

        With ``mark_delivered`` those outbox items are marked sent: the visitor has them
        now. The caller passes it only when this is the session's one open socket; with
        other tabs open the outbox must still push to them (this tab drops the copy)."""
        found = await self._history.replay(contact_id=session.contact_id, channel=ChannelName.WEBCHAT,
                                           recipient=session.public_id, last_seen=last_seen, limit=self._limit)
        if found.undelivered and mark_delivered:
            await self._outbox.mark_delivered(found.undelivered, now=now, external_id="webchat:replay")
        return [frame_of(line, session) for line in found.lines]

    async def choice_label(self, session: Session, question: str, value: str) -> str | None:
        """The label of the button the visitor pressed, from the message that asked, so the
        history reads "Reclamo" rather than "complaint". None if we never asked it."""
        for extra in await self._history.asked(contact_id=session.contact_id, channel=ChannelName.WEBCHAT):
            if isinstance(extra, dict) and extra.get("question") == question:
                for choice in extra.get("choices") or ():
                    if isinstance(choice, dict) and str(choice.get("value")) == value:
                        return str(choice.get("label") or value)
                return None
        return None
