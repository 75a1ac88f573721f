"""The building blocks, in one test process with several database handles (each a
"process" as far as PostgreSQL can tell): notifications, the advisory-lock leadership,
and the web chat hub's presence shortcut. The database "restarting" under them is
``pg_terminate_backend`` of their sessions."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from posventa.core.domain import ChannelName
from posventa.core.inbox import StoredMessage
from posventa.core.persistence import Database, upgrade
from posventa.core.persistence.leadership import AdvisoryLeadership, lock_key
from posventa.core.persistence.notify import MAX_PAYLOAD_BYTES, LocalNotifier, PgNotifier
from posventa.core.persistence.schema import webchat_sessions
from posventa.intake.console.live import LiveUpdates
from posventa.intake.webchat.fanout import FanoutHub
from posventa.intake.webchat.hub import LocalHub
from posventa.intake.webchat.sessions import SessionStore
from tests.scaleout.cluster import eventually
from tests.support import PG_ADMIN_DSN, FakeClock


async def terminate(db_name: str, where: str) -> int:
    """End the sessions matching ``where`` as a database restart would."""
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        return len(await admin.fetch(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND {where}", db_name))
    finally:
        await admin.close()


@pytest.fixture
async def handles(pg_url):
    dbs = [Database(pg_url, pool_size=2) for _ in range(2)]
    yield dbs
    for d in dbs:
        await d.dispose()


@pytest.mark.postgres
async def test_notifications_reach_every_process_once_in_order_and_survive_a_restart(handles, pg_url):
    one, two = PgNotifier(db=handles[0], backoff_base=0.05), PgNotifier(db=handles[1], backoff_base=0.05)
    heard: dict[str, list[str]] = {"one": [], "two": []}
    one.subscribe("orders", heard["one"].append)
    two.subscribe("orders", heard["two"].append)
    await one.start()
    await two.start()
    try:
        assert await one.ready(5) and await two.ready(5)
        for i in range(300):
            one.publish("orders", f"id={i}")
        expected = [f"id={i}" for i in range(300)]
        await eventually(lambda: len(heard["two"]) == 300, what="the other process hearing all 300")
        assert heard["one"] == expected and heard["two"] == expected  # the publisher once, not twice

        # Late subscribers on a running notifier start hearing their topics too, even two
        # subscribed back to back (one LISTEN at a time on the connection).
        late: list[str] = []
        two.subscribe("late_topic", late.append)
        two.subscribe("later_topic", late.append)
        await asyncio.sleep(0.2)
        one.publish("late_topic", "x")
        one.publish("later_topic", "y")
        await eventually(lambda: late == ["x", "y"], what="topics subscribed after start")

        # The listening sessions die (a restart): both reconnect and hear again.
        assert await terminate(pg_url.rsplit("/", 1)[1], "query LIKE 'LISTEN%'") == 2
        await eventually(lambda: two.reconnects >= 1 and two.listening.is_set(), what="listening again")
        await eventually(lambda: one.listening.is_set(), what="listening again")
        one.publish("orders", "after-restart")
        await eventually(lambda: heard["two"][-1:] == ["after-restart"], what="a notification after the restart")
    finally:
        await one.stop()
        await two.stop()


async def test_payloads_are_ids_not_documents():
    notifier = LocalNotifier()
    heard: list[str] = []
    notifier.subscribe("topic", heard.append)
    notifier.publish("topic", "42")
    assert heard == []  # never inside the publisher's own call
    await asyncio.sleep(0)
    assert heard == ["42"]
    with pytest.raises(ValueError, match="8000|limited"):
        notifier.publish("topic", "x" * (MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(ValueError, match="limited"):
        notifier.publish("topic", "é" * (MAX_PAYLOAD_BYTES // 2 + 1))  # bytes count, not characters
    for bad in ("Upper", "with-dash", "", "x" * 41, "a;NOTIFY"):
        with pytest.raises(ValueError, match="topic"):
            notifier.subscribe(bad, heard.append)


@pytest.mark.postgres
async def test_one_leader_and_a_takeover_when_its_session_dies(handles, pg_url):
    first = AdvisoryLeadership(db=handles[0], name="job", check_seconds=0.1, retry_seconds=0.1)
    second = AdvisoryLeadership(db=handles[1], name="job", check_seconds=0.1, retry_seconds=0.1)
    other_job = AdvisoryLeadership(db=handles[1], name="another-job", retry_seconds=0.1)
    try:
        assert await first.is_leader() is True
        assert await second.is_leader() is False
        assert await other_job.is_leader() is True  # locks are per name
        assert lock_key("job") != lock_key("another-job")
        await asyncio.sleep(0.15)
        assert await first.is_leader() is True and await second.is_leader() is False

        # The leader's session is killed (its process died, or the database restarted).
        pid = (await first._conn.fetchval("SELECT pg_backend_pid()"))
        assert await terminate(pg_url.rsplit("/", 1)[1], f"pid = {int(pid)}") == 1
        await eventually(second.is_leader, timeout=5, what="the second taking over")
        await asyncio.sleep(0.15)
        assert await first.is_leader() is False  # it noticed, and the lock is taken now

        # A graceful stop hands over at once.
        await second.stop()
        assert await second.is_leader() is False
        await eventually(first.is_leader, timeout=5, what="the first leading again")
    finally:
        for lead in (first, second, other_job):
            await lead.stop()


@pytest.mark.postgres
async def test_the_hub_asks_other_processes_only_about_visitors_seen_lately(pg_url):
    db = Database(pg_url, pool_size=2)
    await upgrade(db)
    clock = FakeClock()
    notifier = PgNotifier(db=db)
    registry = CollectorRegistry()
    hub = FanoutHub(local=LocalHub(), notifier=notifier, db=db, clock=clock, heartbeat_seconds=10,
                    ack_timeout=0.3, registry=registry)
    await notifier.start()
    await hub.start()
    try:
        _token, session = await SessionStore(db=db, clock=clock).create(language="es", name=None, email=None)

        def asked() -> float:
            return registry.get_sample_value("posventa_webchat_fanout_total", {"event": "forwarded"}) or 0.0

        # Seen just now (a hello somewhere), but no process holds a socket: asked, no answer.
        assert await hub.push(session.public_id, {"type": "message", "message_id": 1}) == 0
        assert asked() == 1
        assert registry.get_sample_value("posventa_webchat_fanout_total", {"event": "unconfirmed"}) == 1
        # Not seen for three heartbeats: connected nowhere, nobody is asked.
        async with db.transaction() as conn:
            await conn.execute(update(webchat_sessions).where(webchat_sessions.c.id == session.id)
                               .values(last_seen_at=clock.now() - timedelta(seconds=31)))
        assert await hub.push(session.public_id, {"type": "message", "message_id": 2}) == 0
        assert asked() == 1
    finally:
        await hub.stop()
        await notifier.stop()
        await db.dispose()


@pytest.mark.postgres
async def test_console_events_cross_processes_only_while_a_page_is_open_somewhere(handles):
    """Two processes' live updates on one database. With no page open anywhere a batch
    sends nothing; once a page's stream on B says it is connected, what A stores next
    reaches it, and A goes quiet again once B has stopped saying it has pages."""
    now = [1000.0]  # a monotonic clock the test moves
    notifiers = [PgNotifier(db=handles[0], backoff_base=0.05), PgNotifier(db=handles[1], backoff_base=0.05)]
    a, b = (LiveUpdates(notifier=n, watch_seconds=5.0, monotonic=lambda: now[0]) for n in notifiers)
    app = web.Application()
    app.router.add_get("/events", b.stream)
    for n in notifiers:
        await n.start()
    await a.start()
    await b.start()
    try:
        assert all([await n.ready(5) for n in notifiers])
        stored = [StoredMessage(message_id=7, case_id=3, contact_id=1, channel=ChannelName.WEBCHAT, new_case=True,
                                text="hola", language="es", auto_reply_allowed=True)]
        a.publish(stored)
        assert await notifiers[0].flush(5) and notifiers[0].published == 0  # nobody watches: nothing sent

        async with TestServer(app) as server, TestClient(server) as client:
            async with client.get("/events") as stream:
                while (await stream.content.readline()).strip() != b": connected":
                    pass
                await eventually(lambda: a.watched_elsewhere, what="A hearing that B has a page open")
                a.publish(stored)
                line = b""
                while not line.startswith(b"data: "):
                    line = await asyncio.wait_for(stream.content.readline(), 5)
                assert json.loads(line[6:]) == {"case": 3, "message_id": 7, "channel": "webchat", "new_case": True}
        # B's page is gone and its last word ages out: A stops sending.
        now[0] += 16.0
        # B heard the last one before A's own send returned and counted it: settle the count.
        assert await notifiers[0].flush(5)
        sent = notifiers[0].published
        a.publish(stored)
        assert await notifiers[0].flush(5) and notifiers[0].published == sent
    finally:
        await a.stop()
        await b.stop()
        for n in notifiers:
            await n.stop()
