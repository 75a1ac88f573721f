"""Outbox delivery on both databases: statuses, backoff, retry_after, leases, SKIP LOCKED."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from posventa.core.cases import CaseService
from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.errors import PermanentDeliveryError, TransientDeliveryError
from posventa.core.inbox import InboxService
from posventa.core.outbox import OutboxSignal, OutboxWorker, RetryPolicy, recover_expired_leases
from posventa.core.outgoing import Outgoing
from posventa.core.persistence import Database
from posventa.core.persistence.schema import contact_identities, outbox
from tests.support import FakeClock, RecordingChannel


async def open_cases(db, clock, n=1, channel=ChannelName.TELEGRAM):
    inbox = InboxService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=3), clock=clock)
    async with inbox:
        return [await inbox.receive(InboundMessage(channel=channel, external_id=f"x{i}", sender=f"u{i}", text="hola"))
                for i in range(n)]


def worker(db, clock, channel, **kw):
    return OutboxWorker(db=db, channel=channel, clock=clock, signal=OutboxSignal(),
                        policy=RetryPolicy(base_delay_seconds=10, max_delay_seconds=600, lease_seconds=60),
                        rand=lambda: 1.0, **kw)


async def statuses(db):
    async with db.engine.connect() as conn:
        return [(r.status, r.attempts) for r in await conn.execute(select(outbox).order_by(outbox.c.id))]


async def test_sent_after_claim(db):
    clock = FakeClock()
    await open_cases(db, clock, 3)
    ch = RecordingChannel(ChannelName.TELEGRAM)
    assert await worker(db, clock, ch).run_once() == 3
    assert {m.recipient for m in ch.sent} == {"u0", "u1", "u2"}
    assert all(m.case_number and m.choices for m in ch.sent)
    assert await statuses(db) == [("sent", 1)] * 3
    assert await worker(db, clock, ch).run_once() == 0


async def test_transient_failure_waits_for_retry_after_then_sends(db):
    clock = FakeClock()
    await open_cases(db, clock)
    ch = RecordingChannel(ChannelName.TELEGRAM)
    ch.failures.append(TransientDeliveryError("429", retry_after=120))
    w = worker(db, clock, ch)
    await w.run_once()
    assert await statuses(db) == [("awaiting_retry", 0)]
    clock.advance(seconds=60)  # backoff would allow it, retry_after does not
    assert await w.run_once() == 0
    clock.advance(seconds=61)
    assert await w.run_once() == 1
    # A rate limit is pacing, not failure: the attempt was given back.
    assert await statuses(db) == [("sent", 1)]


async def test_rate_limits_never_exhaust_the_attempts(db):
    clock = FakeClock()
    await open_cases(db, clock)
    ch = RecordingChannel(ChannelName.TELEGRAM)
    ch.failures.extend(TransientDeliveryError("429", retry_after=5) for _ in range(10))  # max_attempts is 3
    w = worker(db, clock, ch)
    for _ in range(11):
        await w.run_once()
        clock.advance(seconds=6)
    assert await statuses(db) == [("sent", 1)] and len(ch.sent) == 1


async def test_gives_up_after_max_attempts_and_records_it_once(db):
    clock = FakeClock()
    [receipt] = await open_cases(db, clock)
    ch = RecordingChannel(ChannelName.TELEGRAM)
    ch.failures.extend(TransientDeliveryError("down") for _ in range(3))
    w = worker(db, clock, ch)
    for _ in range(3):
        await w.run_once()
        clock.advance(hours=1)
    assert await statuses(db) == [("failed", 3)]
    case = await CaseService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=3),
                             clock=clock).get_case(receipt.case_number)
    # Once: in the history, and as the message's own state; no note repeating it.
    [event] = [e for e in case["history"] if e["kind"] == "delivery_failed"]
    assert event["detail"] == "Delivery by telegram to u0 failed: down"
    assert [m for m in case["messages"] if m["author"] == "note"] == []
    [ack] = [m for m in case["messages"] if m["direction"] == "out"]
    assert ack["delivery"] == {"state": "failed", "attempts": 3, "max_attempts": 3, "next_attempt_at": None,
                               "sent_at": None, "error": "down"}


async def test_every_outgoing_message_shows_its_delivery_state(db):
    clock = FakeClock()
    [receipt] = await open_cases(db, clock)
    cases = CaseService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=3), clock=clock)

    async def delivery():
        case = await cases.get_case(receipt.case_number)
        assert [m["delivery"] for m in case["messages"] if m["direction"] == "in"] == [None]
        [out] = [m["delivery"] for m in case["messages"] if m["direction"] == "out"]
        return out

    queued = await delivery()
    assert queued["state"] == "queued" and queued["next_attempt_at"] == clock.now().isoformat()
    ch = RecordingChannel(ChannelName.TELEGRAM)
    ch.failures.append(TransientDeliveryError("Telegram answered 502"))
    w = worker(db, clock, ch)
    await w.run_once()
    retrying = await delivery()
    # rand=1.0 and base 10 s: the first retry is 10 s later.
    assert retrying == {"state": "retrying", "attempts": 1, "max_attempts": 3,
                        "next_attempt_at": (clock.now() + timedelta(seconds=10)).isoformat(), "sent_at": None,
                        "error": "Telegram answered 502"}
    clock.advance(seconds=10)
    await w.run_once()
    sent = await delivery()
    assert sent == {"state": "sent", "attempts": 2, "max_attempts": 3, "next_attempt_at": None,
                    "sent_at": clock.now().isoformat(), "error": None}


async def test_permanent_failure_marks_identity_unreachable(db):
    clock = FakeClock()
    await open_cases(db, clock)
    ch = RecordingChannel(ChannelName.TELEGRAM)
    ch.failures.append(PermanentDeliveryError("blocked by user", unreachable=True))
    await worker(db, clock, ch).run_once()
    assert await statuses(db) == [("failed", 1)]
    async with db.engine.connect() as conn:
        assert (await conn.execute(select(contact_identities.c.unreachable))).scalar() is True


async def test_later_messages_to_same_recipient_wait_behind_a_failed_one(db):
    clock = FakeClock()
    await open_cases(db, clock)
    async with db.transaction() as conn:  # a second message for the same chat, queued after the ack
        row = dict((await conn.execute(select(outbox))).one()._mapping)
        row.pop("id")
        row["payload"] = {**row["payload"], "text": "second"}
        await conn.execute(outbox.insert().values(**row))
    ch = RecordingChannel(ChannelName.TELEGRAM)
    ch.failures.append(TransientDeliveryError("flood", retry_after=30))
    w = worker(db, clock, ch)
    await w.run_once()
    assert ch.sent == []
    clock.advance(seconds=31)
    await w.run_once()
    assert [m.text for m in ch.sent][-1] == "second" and len(ch.sent) == 2


async def test_expired_leases_go_back_to_the_queue(db):
    clock = FakeClock()
    await open_cases(db, clock, 2)
    w = worker(db, clock, RecordingChannel(ChannelName.TELEGRAM))
    claimed = await w.claim()  # the process "dies" holding the lease
    assert len(claimed) == 2
    assert await recover_expired_leases(db, clock) == 0  # lease still valid
    clock.advance(seconds=61)
    assert await recover_expired_leases(db, clock) == 2
    ch = RecordingChannel(ChannelName.TELEGRAM)
    assert await worker(db, clock, ch).run_once() == 2


async def test_concurrent_workers_never_send_the_same_item(database_url):
    """Two engines (two "processes") drain one outbox; SKIP LOCKED on PostgreSQL, the
    single writer on SQLite: every item goes out exactly once."""
    clock = FakeClock()
    db1, db2 = Database(database_url), Database(database_url)
    try:
        await open_cases(db1, clock, 60)
        seen: list[int] = []
        ch1, ch2 = RecordingChannel(ChannelName.TELEGRAM), RecordingChannel(ChannelName.TELEGRAM)
        ch1.on_send = ch2.on_send = lambda m: seen.append(m.outbox_id)
        w1 = worker(db1, clock, ch1, batch_size=7)
        w2 = worker(db2, clock, ch2, batch_size=7)

        async def drain(w):
            while await w.run_once():
                await asyncio.sleep(0)

        await asyncio.gather(drain(w1), drain(w2))
        assert sorted(seen) == sorted(set(seen)) and len(seen) == 60
        if db1.dialect == "postgresql":
            assert ch1.sent and ch2.sent  # both really took part
    finally:
        await db1.dispose()
        await db2.dispose()


@pytest.mark.parametrize("attempt,retry_after,expected", [(1, None, 10), (3, None, 40), (20, None, 600), (1, 900, 900)])
def test_backoff(attempt, retry_after, expected):
    from posventa.core.outgoing import backoff_delay

    assert backoff_delay(attempt, base=10, cap=600, retry_after=retry_after, rand=1.0).total_seconds() == expected
