"""Crash under load: ``kill -9`` of serve processes at random moments while customers write
by email, web chat and Telegram, each resending whatever was never acknowledged.

Afterwards every acknowledged message is in the database exactly once, every queued reply
to an email or Telegram customer has been delivered, and each email outbox item reached
the relay under one Message-ID (a resend after a crash repeats that same Message-ID, which
the receiving side uses to drop the copy). On SQLite with one process, and on PostgreSQL
with three processes sharing the database.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

from posventa.core.persistence import Database
from tests.faults.checks import (
    assert_stored_exactly_once,
    check_email_delivery,
    check_telegram_delivery,
    inbound_counts,
    outbox_rows,
    wait_delivered,
)
from tests.faults.harness import ServeGroup, ServeProcess, fault_seed, ports, serve_config
from tests.faults.load import EmailCustomers, TelegramCustomers, WebchatVisitors

FINISH_TIMEOUT = 90.0   # for the senders to get every resend acknowledged once the kills stop
DELIVERY_TIMEOUT = 60.0


async def chaos(rng: random.Random, victims: list[ServeProcess], *, kills: int, t0: float) -> list[dict]:
    """Kill -9 a random victim ``kills`` times at random moments, restarting it each time.
    Sometimes the kill lands while the process is still starting up."""
    events = []
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        victim = rng.choice(victims)
        victim.kill9()
        event = {"killed": victim.name, "at_s": round(time.monotonic() - t0, 2)}
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        victim.spawn()
        if rng.random() < 0.25:
            # Again, mid start-up (migrations, lease recovery, the first claims).
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            victim.kill9()
            event["also_killed_during_startup"] = True
            victim.spawn()
        event["back_after_s"] = round(await victim.wait_healthy(), 2)
        events.append(event)
    return events


async def crash_under_load(*, name: str, seed: int, group: ServeGroup, processes: list[ServeProcess],
                           database_url: str, telegram, sink, kills: int) -> dict:
    rng = random.Random(seed)
    context = f"{name} (seed {seed})"
    for p in processes:
        await p.start()

    def live_smtp() -> list[int]:
        return [p.smtp_port for p in processes if p.alive]

    def live_http() -> list[str]:
        return [p.base_url for p in processes if p.alive]

    tag = f"s{seed}"
    emails = EmailCustomers(tag=tag, rng=random.Random(rng.random()), ports=live_smtp, workers=3)
    visitors = WebchatVisitors(tag=tag, rng=random.Random(rng.random()), bases=live_http, count=4)
    customers = TelegramCustomers(tag=tag, rng=random.Random(rng.random()), telegram=telegram, users=5)
    stop_new = asyncio.Event()
    started = time.monotonic()
    load = asyncio.gather(emails.run(stop_new), visitors.run(stop_new), customers.run(stop_new))
    try:
        events = await chaos(rng, processes, kills=kills, t0=started)
        await asyncio.sleep(1.0)  # some traffic into the restarted process before the senders stop
        stop_new.set()
        load_seconds = time.monotonic() - started
        try:
            await asyncio.wait_for(asyncio.shield(load), FINISH_TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"{context}: senders not acknowledged within {FINISH_TIMEOUT}s after the last kill: "
                f"{len(emails.unacknowledged)} emails, {len(visitors.unacknowledged)} web chat messages, "
                f"{customers.unconfirmed} Telegram updates\n{group.logs()}") from None
    finally:
        stop_new.set()
        if not load.done():
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
    finished = time.monotonic() - started

    db = Database(database_url)
    try:
        counts = await inbound_counts(db)
        stored = assert_stored_exactly_once(counts, emails=emails, visitors=visitors, telegram=customers,
                                            context=context)
        drain = await wait_delivered(db, ("email", "telegram"), timeout=DELIVERY_TIMEOUT, context=context)
        rows = await outbox_rows(db, ("email", "telegram"))
    finally:
        await db.dispose()
    mail = check_email_delivery(rows, sink, context=context, acked_inbound=emails.acked)
    telegram_items = check_telegram_delivery(rows, telegram, customers, context=context)
    exits = [await p.terminate() for p in processes]
    assert exits == [0] * len(processes), f"{context}: a clean stop after the storm should exit 0: {exits}"

    report = {
        "scenario": name, "seed": seed, "kills": events, "load_seconds": round(load_seconds, 1),
        "all_acknowledged_after_s": round(finished, 1), "replies_drained_after_s": round(drain, 1),
        "stored": stored,
        "email_attempts": len(emails.replies), "email_outcomes": emails.outcomes.as_dict(),
        "webchat_outcomes": visitors.outcomes.as_dict(),
        "telegram_updates": len(customers.updates),
        "email_outbox_items": mail.items, "email_copies_at_relay": mail.copies,
        "email_extra_copies_same_message_id": mail.extra_copies, "telegram_outbox_items": telegram_items,
        "startup_seconds": {p.name: p.startup_seconds for p in processes},
    }
    print("[faults] " + json.dumps(report, ensure_ascii=False))
    # The storm must really have been a storm: writes were in flight when processes died.
    assert sum(len(v) for v in (emails.acked, visitors.acked)) > 50, report
    assert any(o != "250" for o in emails.outcomes.counts), f"{context}: no SMTP attempt ever failed: {report}"
    return report


async def test_kill9_under_load_sqlite_one_process(tmp_path, telegram, sink, serve_group):
    seed = fault_seed("crash/sqlite")
    http_port, smtp_port = ports(2)
    url = f"sqlite+aiosqlite:///{tmp_path / 'posventa.db'}"
    process = serve_group.add("serve-0", serve_config(
        database_url=url, data_dir=tmp_path / "data", http_port=http_port, smtp_port=smtp_port,
        relay_port=sink.port, telegram=telegram))
    await crash_under_load(name="crash/sqlite/1 process", seed=seed, group=serve_group, processes=[process],
                           database_url=url, telegram=telegram, sink=sink, kills=3)


async def test_kill9_under_load_postgres_three_processes(tmp_path, pg_url, telegram, sink, serve_group):
    seed = fault_seed("crash/postgres")
    processes = []
    for i in range(3):
        http_port, smtp_port = ports(2)
        processes.append(serve_group.add(f"serve-{i}", serve_config(
            database_url=pg_url, data_dir=tmp_path / "data", http_port=http_port, smtp_port=smtp_port,
            # Every process runs the bot; the holder of the PostgreSQL advisory lock polls, and
            # when it is killed another takes over (the kernel closes its session).
            relay_port=sink.port, telegram=telegram)))
    await crash_under_load(name="crash/postgres/3 processes", seed=seed, group=serve_group, processes=processes,
                           database_url=pg_url, telegram=telegram, sink=sink, kills=4)
