"""Outbox and survey work shared by three serve processes: every item is sent once.

Both are claimed with ``SELECT … FOR UPDATE SKIP LOCKED``. The relay here is a real SMTP
server that answers slowly, so the processes' claims overlap for seconds; the proof is
the relay's log: each Message-ID arrives exactly once, and the deliveries are spread
over more than one process (otherwise nothing raced).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from posventa.core.domain import ChannelName, OutboxStatus
from posventa.core.outgoing import Outgoing, ComposedMessage, Recipient
from posventa.core.persistence.schema import outbox, rule_instances
from tests.fakes.smtp_sink import SmtpSink
from tests.scaleout.cluster import eventually
from tests.support import REPO, free_port

pytestmark = pytest.mark.postgres  # skipped without PostgreSQL (see conftest.py)

ITEMS = 160
WAVE = 8
CUSTOMERS = 40


class SlowRelay(SmtpSink):
    """Takes its time over each message, like a busy relay: claims stay in flight."""

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


def email_sections(relay_port: int) -> dict:
    return {"email": {"enabled": True, "listen_port": 0, "domains": ["example.com"],
                      "address": "support@example.com", "outbound": {"host": "127.0.0.1", "port": relay_port}}}


async def test_outbox_and_survey_work_is_sent_once_by_three_processes(cluster, db, tmp_path):
    async with SlowRelay() as relay:
        nodes = []
        for i in range(3):
            sections = email_sections(relay.port)
            sections["email"]["listen_port"] = free_port()
            nodes.append(cluster.spawn(f"node{i}", **sections, surveys={"enabled": True, "tick_seconds": 1},
                                       outbox={"poll_seconds": 0.01}))
        await cluster.wait_up(*nodes)

        # Work appears in waves while all three poll every few milliseconds, so their
        # claim transactions overlap: replies queued by "another tool".
        now = datetime.now(UTC)
        outgoing = Outgoing(email_domain="example.com", max_attempts=8)
        for wave in range(0, ITEMS, WAVE):
            async with db.transaction() as conn:
                await outgoing.add(conn, [
                    ComposedMessage(recipient=Recipient(ChannelName.EMAIL, f"c{i % 60}@cliente.example"),
                                    text=f"respuesta {i}", kind="reply", automatic=False)
                    for i in range(wave, wave + WAVE)], now=now)
            await asyncio.sleep(0.05)
        # …and survey windows that are open now, for the tickers of all three to race on.
        assert cluster.cli("import", "catalog", str(REPO / "examples" / "catalog.toml")).returncode == 0
        closed = (now - timedelta(days=8)).date().isoformat()
        csv = tmp_path / "sales.csv"
        csv.write_text("external_id,closed_at,product,seller,customer_name,email\n" + "".join(
            f"S{i},{closed},PRN-100,Marta,Cliente {i},s{i}@cliente.example\n" for i in range(CUSTOMERS)))
        imported = cluster.cli("import", "sales", str(csv))
        assert imported.returncode == 0, imported.stderr

        async def all_sent():
            async with db.engine.connect() as conn:
                left = (await conn.execute(select(func.count()).select_from(outbox)
                                           .where(outbox.c.status != OutboxStatus.SENT.value))).scalar_one()
                surveys = (await conn.execute(select(func.count()).select_from(outbox)
                                              .where(outbox.c.kind == "survey"))).scalar_one()
            return left == 0 and surveys >= CUSTOMERS

        await eventually(all_sent, timeout=60, what="every outbox item sent")
        await asyncio.sleep(1.5)  # a few more ticks: a double open would show now

        async with db.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
            survey_recipients = Counter(r for (r,) in await conn.execute(
                select(outbox.c.recipient).where(outbox.c.kind == "survey")))
            open_per_contact = Counter(c for (c,) in await conn.execute(
                select(rule_instances.c.contact_id).where(rule_instances.c.status == "open")))
        assert total == ITEMS + CUSTOMERS
        # One first question per customer, one open survey per customer.
        assert len(survey_recipients) == CUSTOMERS and set(survey_recipients.values()) == {1}
        assert len(open_per_contact) == CUSTOMERS and set(open_per_contact.values()) == {1}

        # The relay saw every item once: Message-IDs are per outbox item and stable.
        ids = Counter(m.message["Message-ID"] for m in relay.messages)
        assert len(relay.messages) == total, f"{len(relay.messages)} mails for {total} items"
        assert set(ids.values()) == {1}, [i for i, n in ids.items() if n > 1][:5]

        per_node = [await n.metric("posventa_outbox_delivered_total", 'channel="email",outcome="sent"') for n in nodes]
        assert sum(per_node) == total
        assert sum(1 for n in per_node if n > 0) >= 2, f"only one process sent anything: {per_node}"
        print("deliveries per process:", per_node)
