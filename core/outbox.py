"""Delivering the outbox: claim, send after commit, record the outcome.

Rows move ``queued → inflight → sent``; a transient failure parks the row in
``awaiting_retry`` with exponential backoff and jitter (a channel's ``retry_after`` is a
floor); a permanent failure, or running out of attempts, ends in ``failed``. A claim is a
lease: a worker that dies leaves ``inflight`` rows whose lease expires, and any worker of
the channel claims them again once it has (start-up also puts them back in the queue).
Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several processes never send the
same row; SQLite has one writer, so the claim is serial there.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core import case_history
from posventa.core.domain import ChannelName, OutboxStatus
from posventa.core.errors import PermanentDeliveryError, StorageUnavailable, TransientDeliveryError
from posventa.core.logs import log_fields
from posventa.core.outgoing import CUSTOMER_CHANNELS, backoff_delay, outbound_from_row
from posventa.core.persistence import Database
from posventa.core.persistence.schema import case_events, contact_identities, outbox
from posventa.core.ports import Channel, Clock
from posventa.core.tasks import DrainingLoop

log = logging.getLogger(__name__)

CLAIMABLE = (OutboxStatus.QUEUED.value, OutboxStatus.AWAITING_RETRY.value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_delay_seconds: float = 5.0
    max_delay_seconds: float = 3600.0
    lease_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class DeliveryRecorded:
    """A case message whose delivery state changed (told after the commit): open case
    pages refresh it."""

    case_id: int
    message_id: int
    state: str


class OutboxSignal:
    """Wakes the workers when something was enqueued and committed (no polling delay).

    ``notify()`` wakes every worker; ``notify(channels)`` only those of ``channels``, so
    that a waking worker's claim (a write transaction) is spent where there is work.
    """

    def __init__(self) -> None:
        self._events: list[tuple[ChannelName | None, asyncio.Event]] = []

    def register(self, channel: ChannelName | None = None) -> asyncio.Event:
        """An event set on every notify about ``channel`` (None: about any channel)."""
        event = asyncio.Event()
        self._events.append((channel, event))
        return event

    def notify(self, channels: Collection[ChannelName] | None = None) -> None:
        for channel, event in self._events:
            if channels is None or channel is None or channel in channels:
                event.set()


#: Items a worker claims at once, unless its channel says otherwise (``Channel.claim_batch``).
DEFAULT_CLAIM_BATCH = 50


class OutboxWorker:
    """Sends one channel's outbox items. Never holds a transaction while sending."""

    def __init__(
        self,
        *,
        db: Database,
        channel: Channel,
        clock: Clock,
        signal: OutboxSignal,
        policy: RetryPolicy = RetryPolicy(),
        batch_size: int = DEFAULT_CLAIM_BATCH,
        concurrency: int = 8,
        poll_seconds: float = 1.0,
        rand: Callable[[], float] = random.random,
        on_recorded: Callable[[Sequence[DeliveryRecorded]], None] | None = None,
    ) -> None:
        self._db = db
        self._channel = channel
        self._clock = clock
        self._policy = policy
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._poll_seconds = poll_seconds
        self._rand = rand
        self._on_recorded = on_recorded
        self._loop = DrainingLoop(name=f"outbox-{channel.name}", run=self._run, wake=signal.register(channel.name))
        self.sent = 0
        self.failed = 0
        self.retried = 0

    @property
    def channel_name(self) -> ChannelName:
        return self._channel.name

    @property
    def batch_size(self) -> int:
        return self._batch_size

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self) -> None:
        """Finish the batch in hand, then stop."""
        await self._loop.stop()

    async def _run(self) -> None:
        wake = self._loop.wake
        while not self._loop.stopping:
            try:
                handled = await self.run_once()
            except StorageUnavailable:
                handled = 0
                log.warning("outbox %s: database unavailable, will retry", self._channel.name)
            except Exception:
                handled = 0
                log.exception("outbox %s: unexpected error", self._channel.name)
            if handled:
                continue  # there may be more ready right now
            try:
                await asyncio.wait_for(wake.wait(), timeout=self._poll_seconds)
            except TimeoutError:
                pass
            wake.clear()

    async def run_once(self) -> int:
        """Claim a batch, send it, record outcomes. Returns how many items were handled."""
        claimed = await self.claim()
        if not claimed:
            return 0
        # Deliveries to one recipient keep their order; different recipients go in parallel.
        by_recipient: dict[str, list[dict[str, Any]]] = {}
        for row in claimed:
            by_recipient.setdefault(row["recipient"], []).append(row)
        limit = asyncio.Semaphore(self._concurrency)
        outcomes: list[tuple[dict[str, Any], str | None, BaseException | None]] = []

        async def deliver(rows: list[dict[str, Any]]) -> None:
            async with limit:
                for i, row in enumerate(rows):
                    try:
                        # Whatever the channel logs while sending is about this case.
                        with log_fields(case=row["case_id"], channel=row["channel"]):
                            external = await self._channel.send(outbound_from_row(row))
                        outcomes.append((row, external, None))
                    except TransientDeliveryError as exc:
                        outcomes.append((row, None, exc))
                        # Keep order: the rest of this recipient's rows wait for the retry.
                        for later in rows[i + 1:]:
                            outcomes.append((later, None, _Deferred(exc.retry_after)))
                        return
                    except PermanentDeliveryError as exc:
                        outcomes.append((row, None, exc))
                    except Exception as exc:  # a bug in a channel must not kill the worker
                        log.exception("outbox %s: channel raised unexpectedly", self._channel.name)
                        outcomes.append((row, None, TransientDeliveryError(f"unexpected {type(exc).__name__}")))

        await asyncio.gather(*(deliver(rows) for rows in by_recipient.values()))
        states = await self._record(outcomes)
        if self._on_recorded is not None:
            self._tell(states)
        return len(claimed)

    def _tell(self, states: Sequence[tuple[dict[str, Any], str]]) -> None:
        changed = [DeliveryRecorded(row["case_id"], row["message_id"], state) for row, state in states
                   if row["case_id"] is not None and row["message_id"] is not None]
        if changed:
            try:
                self._on_recorded(changed)  # type: ignore[misc]
            except Exception:  # a listener's bug must not stop deliveries
                log.exception("outbox %s: a delivery listener failed", self._channel.name)

    async def claim(self) -> list[dict[str, Any]]:
        now = self._clock.now()
        lease_until = now + timedelta(seconds=self._policy.lease_seconds)
        async with self._db.transaction() as conn:
            ids = (
                select(outbox.c.id)
                .where(
                    outbox.c.channel == self._channel.name.value,
                    or_(
                        and_(outbox.c.status.in_(CLAIMABLE), outbox.c.next_attempt_at <= now),
                        # An expired lease: its worker died (kill -9, a lost host) before it
                        # recorded an outcome. Recovering these only at start-up is not
                        # enough with several processes: a process restarted within the
                        # lease, or one never restarted, would leave them in flight forever.
                        and_(outbox.c.status == OutboxStatus.INFLIGHT.value, outbox.c.lease_until < now),
                    ),
                )
                .order_by(outbox.c.id)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            )
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids.scalar_subquery()))
                .values(status=OutboxStatus.INFLIGHT.value, lease_until=lease_until, attempts=outbox.c.attempts + 1)
                .returning(*outbox.c)
            )
            rows = [dict(r._mapping) for r in result]
        rows.sort(key=lambda r: r["id"])
        return rows

    async def _record(self, outcomes: Sequence[tuple[dict[str, Any], str | None, BaseException | None]]
                      ) -> list[tuple[dict[str, Any], str]]:
        """Store each outcome; returns each row with the delivery state it now has."""
        now = self._clock.now()
        states: list[tuple[dict[str, Any], str]] = []
        async with self._db.transaction() as conn:
            # Deliveries, the common case, are marked sent in one executemany: a statement
            # per row made recording a claim cost more than sending it (web chat pushes),
            # and on SQLite this transaction holds the write lock the inbox waits for.
            sent = [{"b_id": row["id"], "b_external": (external or None) and str(external)[:300]}
                    for row, external, error in outcomes if error is None]
            if sent:
                self.sent += len(sent)
                await conn.execute(
                    update(outbox).where(outbox.c.id == bindparam("b_id")).values(
                        status=OutboxStatus.SENT.value, sent_at=now, lease_until=None,
                        external_id=bindparam("b_external"), last_error=None,
                    ),
                    sent,
                )
            for row, _external, error in outcomes:
                if error is None:
                    states.append((row, DELIVERY_STATES[OutboxStatus.SENT.value]))
                    continue
                status = OutboxStatus.AWAITING_RETRY.value
                if isinstance(error, _Deferred):
                    # Not attempted: give the attempt back and wait with the row before it.
                    await conn.execute(
                        update(outbox).where(outbox.c.id == row["id"]).values(
                            status=status, attempts=outbox.c.attempts - 1,
                            lease_until=None,
                            next_attempt_at=now + timedelta(seconds=error.retry_after or self._policy.base_delay_seconds),
                        )
                    )
                elif isinstance(error, TransientDeliveryError) and error.retry_after is not None:
                    # A rate limit ("try again in N s") is the far side pacing us, not a failed
                    # attempt: wait as told and give the attempt back, so a long backlog in a
                    # busy Telegram group never runs out of attempts.
                    self.retried += 1
                    await conn.execute(
                        update(outbox).where(outbox.c.id == row["id"]).values(
                            status=status, attempts=outbox.c.attempts - 1,
                            next_attempt_at=now + timedelta(seconds=min(float(error.retry_after), 86400.0)),
                            lease_until=None, last_error=str(error)[:2000],
                        )
                    )
                elif isinstance(error, TransientDeliveryError) and row["attempts"] < row["max_attempts"]:
                    self.retried += 1
                    delay = backoff_delay(row["attempts"], base=self._policy.base_delay_seconds,
                                          cap=self._policy.max_delay_seconds, retry_after=None, rand=self._rand())
                    log.info("outbox %s #%s: transient failure (%s), retry in %.0fs", row["channel"], row["id"],
                             error, delay.total_seconds(), extra={"case": row["case_id"], "channel": row["channel"]})
                    await conn.execute(
                        update(outbox).where(outbox.c.id == row["id"]).values(
                            status=status, next_attempt_at=now + delay, lease_until=None,
                            last_error=str(error)[:2000],
                        )
                    )
                else:
                    status = OutboxStatus.FAILED.value
                    self.failed += 1
                    log.warning("outbox %s #%s: failed for good: %s", row["channel"], row["id"], error,
                                extra={"case": row["case_id"], "channel": row["channel"]})
                    await conn.execute(
                        update(outbox).where(outbox.c.id == row["id"]).values(
                            status=status, lease_until=None, last_error=str(error)[:2000],
                        )
                    )
                    await _note_failure(conn, row, error, now)
                states.append((row, DELIVERY_STATES[status]))
        return states


class _Deferred(Exception):
    def __init__(self, retry_after: float | None) -> None:
        self.retry_after = retry_after
        super().__init__("deferred behind an earlier message to the same recipient")


async def _note_failure(conn: AsyncConnection, row: dict[str, Any], error: BaseException | None, now) -> None:
    """A delivery that failed for good is recorded once, in the case's history. A
    customer message also shows it as its own delivery state (see ``delivery_states``),
    so no second, identical note goes into the conversation."""
    if isinstance(error, PermanentDeliveryError) and error.unreachable and row["channel"] in CUSTOMER_CHANNELS:
        await conn.execute(
            update(contact_identities)
            .where(contact_identities.c.channel == row["channel"], contact_identities.c.address == row["recipient"])
            .values(unreachable=True)
        )
    if row["case_id"] is None:
        return
    await conn.execute(insert(case_events).values(
        case_id=row["case_id"], at=now, actor="system", kind="delivery_failed",
        **case_history.says(case_history.DELIVERY_FAILED, channel=row["channel"], recipient=row["recipient"],
                            error=str(error)[:1500])))


#: What a person reads for an outbox status: ``inflight`` is "sending", ``awaiting_retry`` "retrying".
DELIVERY_STATES = {
    OutboxStatus.QUEUED.value: "queued",
    OutboxStatus.INFLIGHT.value: "sending",
    OutboxStatus.AWAITING_RETRY.value: "retrying",
    OutboxStatus.SENT.value: "sent",
    OutboxStatus.FAILED.value: "failed",
}


async def delivery_states(conn: AsyncConnection, case_id: int) -> dict[int, dict[str, Any]]:
    """message id → its delivery (state, attempts, next attempt, sent time, last error),
    for the outgoing messages of one case."""
    rows = await conn.execute(
        select(outbox.c.message_id, outbox.c.status, outbox.c.attempts, outbox.c.max_attempts,
               outbox.c.next_attempt_at, outbox.c.sent_at, outbox.c.last_error)
        .where(outbox.c.case_id == case_id, outbox.c.message_id.is_not(None))
        .order_by(outbox.c.id)
    )
    states: dict[int, dict[str, Any]] = {}
    for r in rows:
        state = DELIVERY_STATES.get(r.status, r.status)
        waiting = state in ("queued", "retrying")
        states[r.message_id] = {
            "state": state,
            "attempts": r.attempts,
            "max_attempts": r.max_attempts,
            "next_attempt_at": r.next_attempt_at.isoformat() if waiting and r.next_attempt_at else None,
            "sent_at": r.sent_at.isoformat() if r.sent_at else None,
            # A sent row keeps no error; a retrying one says why it waits.
            "error": r.last_error if state != "sent" else None,
        }
    return states


async def recover_expired_leases(db: Database, clock: Clock, *, all_inflight: bool = False) -> int:
    """Put rows whose sender died back in the queue. With one process (SQLite), every
    in-flight row at start-up is an orphan; with several, only expired leases are."""
    now = clock.now()
    cond = outbox.c.status == OutboxStatus.INFLIGHT.value
    if not all_inflight:
        cond = cond & or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now)
    async with db.transaction() as conn:
        result = await conn.execute(
            update(outbox).where(cond).values(status=OutboxStatus.AWAITING_RETRY.value, next_attempt_at=now,
                                              lease_until=None)
        )
        count = result.rowcount or 0
    if count:
        log.info("outbox: %d in-flight deliveries recovered after a restart", count)
    return count


async def backlog(db: Database) -> dict[tuple[str, str], int]:
    """(channel, status) → count, for /metrics."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.channel, outbox.c.status, func.count())
            .where(outbox.c.status != OutboxStatus.SENT.value)
            .group_by(outbox.c.channel, outbox.c.status)
        )
        return {(r[0], r[1]): r[2] for r in rows}


class Outbox:
    """The outbox items' status, for what happens outside a worker's claim-send-record:
    a web chat reply the visitor received in a history replay (``mark_delivered``). The
    one place besides ``OutboxWorker`` that writes an item's status."""

    #: States of an item that has not reached its recipient yet.
    UNDELIVERED = (OutboxStatus.QUEUED.value, OutboxStatus.AWAITING_RETRY.value, OutboxStatus.FAILED.value)

    def __init__(self, *, db: Database) -> None:
        self._db = db

    async def mark_delivered(self, outbox_ids: Sequence[int], *, now: datetime, external_id: str) -> None:
        """The recipient has these items by another way: mark them sent (those still
        undelivered; one a worker claimed meanwhile is left to it)."""
        async with self._db.transaction() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(outbox_ids), outbox.c.status.in_(self.UNDELIVERED))
                .values(status=OutboxStatus.SENT.value, sent_at=now, lease_until=None, external_id=external_id,
                        last_error=None))
