"""Database down: PostgreSQL is stopped under load (once cleanly, once as a crash) and
started again. While it is away every inbound channel says "try later" in its own words —
SMTP ``451``, the web chat closes with ``1013`` and no ack, Telegram's offset is not
confirmed — and once it is back nothing acknowledged is missing or stored twice, and every
reply goes out.

This uses a PostgreSQL server of its own (``private_pg``): the shared one on 5432 is never
restarted.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import aiohttp
import asyncpg

from posventa.core.persistence import Database, upgrade
from tests.faults.checks import (
    assert_stored_exactly_once,
    check_email_delivery,
    check_telegram_delivery,
    inbound_counts,
    outbox_rows,
    wait_delivered,
)
from tests.faults.harness import fault_seed, ports, serve_config
from tests.faults.load import EmailCustomers, TelegramCustomers, WebchatVisitor, WebchatVisitors

DOWN_SECONDS = 4.0


async def test_postgres_restarts_under_load(tmp_path, private_pg, telegram, sink, serve_group):
    seed = fault_seed("database-down")
    rng = random.Random(seed)
    context = f"database-down (seed {seed})"
    admin = await asyncpg.connect(private_pg.admin_dsn())
    try:
        await admin.execute('CREATE DATABASE "posventa"')
    finally:
        await admin.close()
    url = private_pg.url("posventa")
    db = Database(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()

    http_port, smtp_port = ports(2)
    process = serve_group.add("serve-0", serve_config(
        database_url=url, data_dir=tmp_path / "data", http_port=http_port, smtp_port=smtp_port,
        relay_port=sink.port, telegram=telegram))
    await process.start()

    tag = f"b{seed}"
    emails = EmailCustomers(tag=tag, rng=random.Random(rng.random()), ports=lambda: [process.smtp_port], workers=2)
    visitors = WebchatVisitors(tag=tag, rng=random.Random(rng.random()), bases=lambda: [process.base_url], count=3)
    customers = TelegramCustomers(tag=tag, rng=random.Random(rng.random()), telegram=telegram, users=4)
    probe = WebchatVisitor(tag=f"{tag}-probe", index=0, rng=random.Random(seed), bases=lambda: [process.base_url],
                           outcomes=visitors.outcomes)
    stop_new = asyncio.Event()
    started = time.monotonic()
    load = asyncio.gather(emails.run(stop_new), visitors.run(stop_new), customers.run(stop_new))
    outages = []
    try:
        async with aiohttp.ClientSession() as http:
            for mode in ("fast", "immediate"):
                await asyncio.sleep(rng.uniform(2.0, 4.0))
                outages.append(await outage(private_pg, mode, process=process, emails=emails,
                                            customers=customers, probe=probe, http=http, context=context))
                assert process.alive, f"{context}: serve died with the database:\n{process.log_tail()}"
            await asyncio.sleep(2.0)
            stop_new.set()
            try:
                await asyncio.wait_for(asyncio.shield(load), 90)
            except TimeoutError:
                raise AssertionError(f"{context}: not everything was acknowledged after the database came back: "
                                     f"{len(emails.unacknowledged)} emails, {len(visitors.unacknowledged)} "
                                     f"web chat, {customers.unconfirmed} Telegram\n{process.log_tail()}") from None
            await asyncio.wait_for(probe.run(http, stop_new), 30)  # the probe's unacked message, resent
        acknowledged_after = time.monotonic() - started
    finally:
        stop_new.set()
        if not load.done():
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
    visitors.visitors.append(probe)

    assert "451" in emails.outcomes.counts, f"{context}: {emails.outcomes}"
    assert "webchat:closed-1013" in visitors.outcomes.counts, f"{context}: {visitors.outcomes}"
    db = Database(url)
    try:
        counts = await inbound_counts(db)
        stored = assert_stored_exactly_once(counts, emails=emails, visitors=visitors, telegram=customers,
                                            context=context)
        drain = await wait_delivered(db, ("email", "telegram"), timeout=60, context=context)
        rows = await outbox_rows(db, ("email", "telegram"))
    finally:
        await db.dispose()
    mail = check_email_delivery(rows, sink, context=context, acked_inbound=emails.acked)
    telegram_items = check_telegram_delivery(rows, telegram, customers, context=context)
    assert await process.terminate() == 0
    print("[faults] " + json.dumps({
        "scenario": "database-down", "seed": seed, "outages": outages,
        "all_acknowledged_after_s": round(acknowledged_after, 1), "replies_drained_after_s": round(drain, 1),
        "stored": stored, "email_outcomes": emails.outcomes.as_dict(), "webchat_outcomes": visitors.outcomes.as_dict(),
        "telegram_updates": len(customers.updates), "email_outbox_items": mail.items,
        "email_copies_at_relay": mail.copies, "telegram_outbox_items": telegram_items,
    }))


async def outage(server, mode: str, *, process, emails: EmailCustomers, customers: TelegramCustomers,
                 probe: WebchatVisitor, http: aiohttp.ClientSession, context: str) -> dict:
    """Stop the database, check that each door says "try later", start it again."""
    # A web chat visitor already connected before the database goes away.
    ws = await http.ws_connect(f"{process.base_url}/chat/ws")
    try:
        await ws.send_str(json.dumps({"type": "hello", "session": probe.session, "last_seen": None, "lang": "es"}))
        welcome = json.loads((await ws.receive(timeout=10)).data)
        assert welcome["type"] == "welcome", welcome
        probe.session = welcome["session"]

        went_down = time.monotonic()
        server.stop(mode)
        code = await emails.probe(process.smtp_port)
        assert code == 451, f"{context}: SMTP during a database {mode} stop answered {code}, not 451"

        cid = f"{probe.tag}-{mode}"
        probe.pending[cid] = f"Mensaje durante la caída ({mode})"
        await ws.send_str(json.dumps({"type": "message", "id": cid, "text": probe.pending[cid]}))
        frames = []
        while True:
            msg = await ws.receive(timeout=15)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frames.append(json.loads(msg.data))
        assert not [f for f in frames if f["type"] == "ack"], f"{context}: acked without a database: {frames}"
        assert ws.close_code == 1013, f"{context}: web chat closed with {ws.close_code}, not 1013 (try later)"
        visitor_close = ws.close_code
    finally:
        await ws.close()

    update = customers.write()
    await asyncio.sleep(max(2.0, DOWN_SECONDS - (time.monotonic() - went_down)))
    assert telegram_unconfirmed(customers, update), \
        f"{context}: Telegram update {update['update_id']} confirmed while the database was down"
    down_for = time.monotonic() - went_down
    server.start()
    return {"mode": mode, "down_s": round(down_for, 1), "smtp": code, "webchat_close": visitor_close,
            "telegram_offset_held_at": customers.telegram.confirmed_offset}


def telegram_unconfirmed(customers: TelegramCustomers, update: dict) -> bool:
    tg = customers.telegram
    return update["update_id"] >= tg.confirmed_offset and update in tg.pending_updates
