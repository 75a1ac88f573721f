"""The event ledger: what an at-least-once transport has already handled (``processed_events``).

An update a transport may deliver again (Telegram redelivers an unconfirmed update for
24 hours) is marked here in the same transaction as what handling it queued, so a
redelivery does nothing twice. Each transport marks under its own ``source``.

A core port: adapters record their events here instead of writing the table.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from posventa.core.outgoing import ComposedMessage, Outgoing
from posventa.core.persistence import Database
from posventa.core.persistence.schema import processed_events
from posventa.core.ports import Clock

#: The column's width: longer ids are cut (consistently, on every call).
MAX_EVENT_ID = 200


class EventLedger:
    def __init__(self, *, db: Database, outgoing: Outgoing, clock: Clock, on_commit: Callable[[], None]) -> None:
        self._db = db
        self._outgoing = outgoing
        self._clock = clock
        #: Wakes the outbox workers after something was queued.
        self._on_commit = on_commit

    async def seen(self, source: str, event_id: str) -> bool:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(processed_events.c.event_id).where(
                processed_events.c.source == source, processed_events.c.event_id == event_id[:MAX_EVENT_ID]))).first()
        return row is not None

    async def record(self, source: str, event_id: str, items: Sequence[ComposedMessage] = ()) -> bool:
        """Mark ``event_id`` done and queue ``items``, in one transaction.

        Returns False (and queues nothing) when the event was already recorded: a
        redelivered update, or another process that got there first.
        """
        now = self._clock.now()
        try:
            async with self._db.transaction() as conn:
                exists = (await conn.execute(select(processed_events.c.event_id).where(
                    processed_events.c.source == source,
                    processed_events.c.event_id == event_id[:MAX_EVENT_ID]))).first()
                if exists is not None:
                    return False
                await conn.execute(insert(processed_events).values(source=source, event_id=event_id[:MAX_EVENT_ID],
                                                                   at=now))
                if items:
                    await self._outgoing.add(conn, list(items), now=now)
        except IntegrityError:
            return False
        if items:
            self._on_commit()
        return True

    async def queue(self, items: Sequence[ComposedMessage]) -> None:
        """Queue deliveries that need no marker."""
        if not items:
            return
        async with self._db.transaction() as conn:
            await self._outgoing.add(conn, list(items), now=self._clock.now())
        self._on_commit()

    async def marked(self, source: str, prefix: str) -> list[str]:
        """The recorded event ids of ``source`` that start with ``prefix``."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(select(processed_events.c.event_id).where(
                processed_events.c.source == source, processed_events.c.event_id.startswith(prefix)))
            return [r[0] for r in rows]

    async def mark(self, source: str, event_id: str) -> None:
        """Record ``event_id`` (once: a second mark is harmless)."""
        try:
            async with self._db.transaction() as conn:
                await conn.execute(insert(processed_events).values(source=source, event_id=event_id[:MAX_EVENT_ID],
                                                                   at=self._clock.now()))
        except IntegrityError:
            pass

    async def prune(self, sources: Collection[str], before: datetime) -> int:
        """Forget the markers of ``sources`` recorded before ``before``."""
        async with self._db.transaction() as conn:
            result = await conn.execute(delete(processed_events).where(
                processed_events.c.source.in_(tuple(sources)), processed_events.c.at < before))
            return result.rowcount or 0
