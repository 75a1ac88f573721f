"""Dependencies down: the outbound SMTP relay, Discourse and Telegram go away for a while.

Customers keep writing (SMTP in, web chat), cases keep opening, agents keep replying and
publishing to the KB; the replies wait in the outbox, ``/metrics`` shows the backlog per
channel, and once the far sides are back everything is delivered — exactly once to the
relay, since nothing crashed.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time

import aiohttp
from sqlalchemy import text

from posventa.core.persistence import Database
from tests.fakes.discourse_api import FakeDiscourse
from tests.faults.checks import (
    assert_stored_exactly_once,
    check_email_delivery,
    check_telegram_delivery,
    inbound_counts,
    outbox_rows,
    wait_delivered,
)
from tests.faults.harness import fault_seed, ports, serve_config
from tests.faults.load import EmailCustomers, TelegramCustomers, WebchatVisitors
from tests.support import API_TOKEN

PENDING = ("queued", "inflight", "awaiting_retry")
_METRIC = re.compile(r'^posventa_outbox_items\{channel="([^"]+)",status="([^"]+)"\} ([0-9.e+]+)$')


async def backlog(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """channel → items not yet sent, from /metrics (Prometheus text format)."""
    async with http.get(f"{base}/metrics") as r:
        assert r.status == 200
        body = await r.text()
    out: dict[str, float] = {}
    for line in body.splitlines():
        m = _METRIC.match(line)
        if m and m.group(2) in PENDING:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
        assert not (m and m.group(2) == "failed" and float(m.group(3))), f"failed deliveries: {line}"
    return out


async def burst(customers, stop_after: float) -> None:
    """Let a set of senders write for ``stop_after`` seconds, then until all is acknowledged."""
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(stop_after, stop.set)
    await asyncio.wait_for(customers.run(stop), stop_after + 30)


async def cases_by_channel(db: Database) -> dict[str, list[int]]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, channel FROM cases ORDER BY id"))).all()
    out: dict[str, list[int]] = {}
    for cid, channel in rows:
        out.setdefault(channel, []).append(cid)
    return out


async def test_relay_discourse_and_telegram_down_then_back(tmp_path, telegram, sink, serve_group):
    seed = fault_seed("dependencies-down")
    rng = random.Random(seed)
    context = f"dependencies-down (seed {seed})"
    async with FakeDiscourse(api_key="kb-key-0123456789", rate_limit_per_minute=100_000) as forum:
        category = forum.add_category("Soporte")
        forum.add_topic("La impresora muestra el error 42", "Apague la impresora y vuelva a encenderla.",
                        category_id=category)
        http_port, smtp_port = ports(2)
        url = f"sqlite+aiosqlite:///{tmp_path / 'posventa.db'}"
        process = serve_group.add("serve-0", serve_config(
            database_url=url, data_dir=tmp_path / "data", http_port=http_port, smtp_port=smtp_port,
            relay_port=sink.port, telegram=telegram, overrides={"kb": {
                "enabled": True, "api_url": forum.base_url, "api_key": "kb-key-0123456789", "api_user": "system",
                "publish_category": category, "sync_interval_seconds": 2, "requests_per_minute": 6000}}))
        await process.start()
        db = Database(url)
        api = aiohttp.ClientSession(process.base_url, headers={"Authorization": f"Bearer {API_TOKEN}"})
        try:
            smtp = [process.smtp_port]
            emails = EmailCustomers(tag=f"d{seed}", rng=random.Random(rng.random()), ports=lambda: smtp, workers=2)
            visitors = WebchatVisitors(tag=f"d{seed}", rng=random.Random(rng.random()),
                                       bases=lambda: [process.base_url], count=2)
            customers = TelegramCustomers(tag=f"d{seed}", rng=random.Random(rng.random()), telegram=telegram, users=3)

            # Before: everything flows.
            for _ in range(3):
                customers.write()
            await burst(emails, 1.0)
            await asyncio.wait_for(customers.wait_confirmed(), 30)
            await wait_delivered(db, ("email", "telegram"), timeout=30, context=context + " warm-up")
            before = await cases_by_channel(db)

            # Down: the relay and Telegram stop answering at all, Discourse answers 503.
            went_down = time.monotonic()
            await sink.stop()
            await telegram.stop()
            forum.down = True
            delivered_before = len(sink.messages)

            await asyncio.gather(burst(emails, 5.0), burst(visitors, 5.0))
            assert set(emails.outcomes.counts) == {"250"}, f"{context}: SMTP in must not notice: {emails.outcomes}"
            assert set(visitors.outcomes.counts) == {"webchat:ack"}, f"{context}: {visitors.outcomes}"
            for _ in range(3):
                customers.write()  # Telegram keeps them until the bot can fetch them
            during = await cases_by_channel(db)
            opened = {ch: len(during.get(ch, [])) - len(before.get(ch, [])) for ch in ("email", "webchat")}
            assert opened["email"] == len(emails.acked) - len(before.get("email", [])) and opened["webchat"] >= 2, \
                f"{context}: cases must keep opening: {opened}"

            # Agents answer and publish while the far sides are away.
            replied = []
            for number in during["email"][-5:] + during.get("telegram", []):
                async with api.post(f"/api/v1/cases/{number}/reply", json={"text": "Ya lo revisamos, gracias."}) as r:
                    assert r.status == 202, await r.text()
                    replied.append((await r.json())["channel"])
            published = during["email"][-2:]
            for number in published:
                async with api.patch(f"/api/v1/cases/{number}",
                                     json={"kb": {"answer": "Reinstalar el controlador de la impresora."}}) as r:
                    assert r.status == 200, await r.text()
                async with api.post(f"/api/v1/cases/{number}/kb-action", json={"action": "publish"}) as r:
                    assert r.status == 200, await r.text()
            assert {"email", "telegram"} <= set(replied)

            # The backlog is visible where an operator looks.
            deadline = time.monotonic() + 20
            while True:
                seen = await backlog(api, process.base_url)
                if all(seen.get(ch, 0) > 0 for ch in ("email", "telegram", "kb")):
                    break
                assert time.monotonic() < deadline, f"{context}: /metrics shows no backlog: {seen}"
                await asyncio.sleep(0.3)
            assert len(sink.messages) == delivered_before
            outage = time.monotonic() - went_down

            # Back.
            came_back = time.monotonic()
            await sink.start()
            await telegram.start()
            forum.down = False
            await asyncio.wait_for(customers.wait_confirmed(), 60)
            drain = await wait_delivered(db, ("email", "telegram", "kb"), timeout=60, context=context)
            recovered = time.monotonic() - came_back
            after = await backlog(api, process.base_url)
            assert all(after.get(ch, 0) == 0 for ch in ("email", "telegram", "kb")), after

            rows = await outbox_rows(db, ("email", "telegram", "kb"))
            counts = await inbound_counts(db)
        finally:
            await api.close()
            await db.dispose()
        stored = assert_stored_exactly_once(counts, emails=emails, visitors=visitors, telegram=customers,
                                            context=context)
        mail = check_email_delivery(rows, sink, context=context, acked_inbound=emails.acked)
        assert mail.extra_copies == 0, f"{context}: no crash, so no second copy: {mail}"
        telegram_items = check_telegram_delivery(rows, telegram, customers, context=context)
        topics = [t for t in forum.topics.values() if (t.external_id or "").startswith("case-")]
        assert sorted(t.external_id for t in topics) == sorted(f"case-{n}" for n in published), \
            f"{context}: KB topics {[t.external_id for t in topics]}"
        assert await process.terminate() == 0

    print("[faults] " + json.dumps({
        "scenario": "dependencies-down", "seed": seed, "outage_s": round(outage, 1),
        "recovered_after_s": round(recovered, 1), "replies_drained_after_s": round(drain, 1),
        "backlog_seen_in_metrics": seen, "stored": stored, "email_outbox_items": mail.items,
        "email_copies_at_relay": mail.copies, "telegram_outbox_items": telegram_items,
        "kb_topics_published": len(topics), "telegram_updates": len(customers.updates),
    }))
