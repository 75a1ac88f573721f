"""Telegram with several processes: one poller by advisory lock, or webhooks to any.

Telegram allows one ``getUpdates`` per bot at a time (a second one ends the first with
409 Conflict). Of three processes polling the fake Bot API, exactly one holds the lock
and polls; ``kill -9`` it and PostgreSQL drops its session, and with it the lock, so
another process takes over within seconds and nothing is lost or stored twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import select

from posventa.core.persistence.schema import messages
from tests.fakes.telegram_api import FakeTelegram
from tests.scaleout.cluster import Cluster, Node, eventually

pytestmark = pytest.mark.postgres  # skipped without PostgreSQL (see conftest.py)

LEADS = "this process leads"


def telegram(tg: FakeTelegram, **extra) -> dict:
    return {"telegram": {"enabled": True, "token": tg.token, "api_base_url": tg.api_base_url,
                         "poll_timeout_seconds": 1, **extra}}


async def stored_texts(db) -> Counter:
    async with db.engine.connect() as conn:
        return Counter(r.external_id for r in await conn.execute(
            select(messages.c.external_id).where(messages.c.channel == "telegram", messages.c.direction == "in")))


def leaders(nodes: list[Node]) -> list[Node]:
    return [n for n in nodes if n.alive and LEADS in n.output()]


async def test_one_process_polls_and_another_takes_over_after_kill_9(cluster: Cluster, db):
    async with FakeTelegram(max_long_poll=2.0) as tg:
        nodes = [cluster.spawn(f"bot{i}", **telegram(tg)) for i in range(3)]
        await cluster.wait_up(*nodes)
        [leader] = await eventually(lambda: leaders(nodes), what="a poller elected")

        for user in range(1, 6):
            tg.private_text(1000 + user, f"Hola, soy el cliente {user}")
        await eventually(lambda: _count_at_least(db, 5), what="five messages stored")
        # The others kept asking all along (every few seconds) and never got the lock.
        assert leaders(nodes) == [leader]
        assert [c for c in tg.calls_to("getUpdates") if c.status == 409] == []
        # What an operator's dashboard shows: exactly one 1 across the processes.
        assert [await n.metric("posventa_telegram_poller") for n in nodes] == [float(n is leader) for n in nodes]

        # The leader's acks go out before it dies: a kill -9 between an outbox claim and its
        # send leaves that ack to the lease (two minutes; tests/faults/test_lease_takeover.py
        # covers it), and this test is about the poller. A busy CI host opened that window.
        first = {1000 + u for u in range(1, 6)}
        await eventually(lambda: {m["chat"]["id"] for m in tg.sent_messages()} >= first, what="the first acks")
        cluster.kill(leader)
        others = [n for n in nodes if n is not leader]
        [successor] = await eventually(lambda: leaders(others), timeout=20,
                                       what="another process polling after kill -9")
        for user in range(6, 10):
            tg.private_text(1000 + user, f"Hola, soy el cliente {user}")
        await eventually(lambda: _count_at_least(db, 9), what="the messages sent after the takeover")

        texts = await stored_texts(db)
        assert len(texts) == 9 and set(texts.values()) == {1}
        assert leaders(others) == [successor]
        # Every customer gets one acknowledgement: no update was handled twice.
        customers = {1000 + u for u in range(1, 10)}
        await eventually(lambda: {m["chat"]["id"] for m in tg.sent_messages()} >= customers, what="the acks")
        await asyncio.sleep(0.5)  # a second ack would show now
        acks = Counter(m["chat"]["id"] for m in tg.sent_messages())
        assert set(acks) == customers and set(acks.values()) == {1}, acks


async def test_webhook_mode_works_behind_any_process(cluster: Cluster, db):
    async with FakeTelegram() as tg:
        nodes = [cluster.spawn(f"hook{i}", **telegram(tg, mode="webhook", webhook_secret="s3cret-hook"))
                 for i in range(2)]
        await cluster.wait_up(*nodes)
        await eventually(lambda: tg.webhook is not None and len(tg.calls_to("setWebhook")) >= 2,
                         what="both registered the webhook")
        updates = [tg.private_text(2000 + i, f"Consulta {i}") for i in range(6)]
        statuses = []
        for i, update in enumerate(updates):
            node = nodes[i % 2]
            statuses.append(await tg.deliver_webhook(f"{node.base}/telegram/webhook", update, "s3cret-hook"))
        # Telegram retried one on the other process (its first answer got lost).
        statuses.append(await tg.deliver_webhook(f"{nodes[1].base}/telegram/webhook", updates[0], "s3cret-hook"))
        forged = await tg.deliver_webhook(f"{nodes[0].base}/telegram/webhook", updates[1], "wrong")
        assert statuses == [200] * 7 and forged == 403
        texts = await stored_texts(db)
        assert len(texts) == 6 and set(texts.values()) == {1}
        assert tg.calls_to("getUpdates") == []  # nobody polls in webhook mode
        assert not any("leadership" in n.output() for n in nodes)


async def _count_at_least(db, n: int) -> bool:
    return sum((await stored_texts(db)).values()) >= n
