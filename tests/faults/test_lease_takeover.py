"""The deterministic form of what the PostgreSQL crash test found: a process killed while it
held outbox claims, and restarted before their lease ran out (or never restarted), left
them ``inflight`` for good, because only start-up looked at expired leases. A live worker
now takes over a claim whose lease has expired."""

from __future__ import annotations

from sqlalchemy import select

from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.inbox import InboxService
from posventa.core.outbox import OutboxSignal, OutboxWorker, RetryPolicy, recover_expired_leases
from posventa.core.outgoing import Outgoing
from posventa.core.persistence.schema import outbox
from tests.support import FakeClock, RecordingChannel


def worker(db, clock, channel):
    return OutboxWorker(db=db, channel=channel, clock=clock, signal=OutboxSignal(),
                        policy=RetryPolicy(base_delay_seconds=1, max_delay_seconds=10, lease_seconds=60))


async def test_a_live_worker_takes_over_claims_whose_lease_expired(db):
    clock = FakeClock()
    inbox = InboxService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=5), clock=clock)
    async with inbox:
        for i in range(3):
            await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id=f"m{i}", sender=f"u{i}",
                                               text="hola"))
    dead = RecordingChannel(ChannelName.TELEGRAM)
    claimed = await worker(db, clock, dead).claim()  # then the process is killed: no outcome recorded
    assert len(claimed) == 3

    # The process comes back at once: its start-up finds leases that have not expired.
    assert await recover_expired_leases(db, clock) == 0
    survivor = RecordingChannel(ChannelName.TELEGRAM)
    w = worker(db, clock, survivor)
    assert await w.run_once() == 0, "a live lease must not be taken over"

    clock.advance(seconds=61)
    assert await w.run_once() == 3
    assert sorted(m.recipient for m in survivor.sent) == ["u0", "u1", "u2"]
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.status, outbox.c.attempts))).all()
    # The dead claim counts as an attempt: an item that kills its sender each time still ends.
    assert sorted(rows) == [("sent", 2)] * 3
