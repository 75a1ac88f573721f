"""SMTP listens on every process (each its own port here; one MX name in production).

A sending MTA may retry a message on another of our MX hosts, or deliver it to two at
once after a timeout: whichever process gets it, it is stored once (dedupe on the
Message-ID, enforced by the database across processes) and acknowledged to the customer
once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from email.message import EmailMessage

import aiosmtplib
import pytest
from sqlalchemy import func, select

from posventa.core.persistence.schema import cases, messages
from tests.fakes.smtp_sink import SmtpSink
from tests.scaleout.cluster import eventually
from tests.support import free_port

pytestmark = pytest.mark.postgres  # skipped without PostgreSQL (see conftest.py)

MAILS = 12


def mail(i: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Cliente {i} <cliente{i}@cliente.example>"
    msg["To"] = "support@example.com"
    msg["Subject"] = f"Consulta {i}"
    msg["Message-ID"] = f"<consulta-{i}@cliente.example>"
    msg.set_content(f"La factura {i} no llegó.")
    return msg


async def test_mail_to_any_process_lands_once_in_the_one_database(cluster, db):
    async with SmtpSink() as relay:
        nodes = [cluster.spawn(f"mx{i}", email={
            "enabled": True, "listen_port": free_port(), "domains": ["example.com"],
            "address": "support@example.com", "outbound": {"host": "127.0.0.1", "port": relay.port}})
            for i in range(2)]
        await cluster.wait_up(*nodes)
        ports = [n.sections["email"]["listen_port"] for n in nodes]

        async def deliver(i: int, port: int) -> str:
            _errors, response = await aiosmtplib.send(mail(i), hostname="127.0.0.1", port=port,
                                                      sender=f"cliente{i}@cliente.example",
                                                      recipients=["support@example.com"], timeout=20)
            return response

        # Every message to both processes at the same moment, plus a late retry to one.
        answers = await asyncio.gather(*(deliver(i, port) for i in range(MAILS) for port in ports))
        answers += await asyncio.gather(*(deliver(i, ports[i % 2]) for i in range(MAILS)))
        assert all(a.startswith("2") for a in answers), answers  # 250 every time: stored, or already stored

        async with db.engine.connect() as conn:
            stored = Counter(x for (x,) in await conn.execute(
                select(messages.c.external_id).where(messages.c.channel == "email", messages.c.direction == "in")))
            opened = (await conn.execute(select(func.count()).select_from(cases))).scalar_one()
        assert stored == Counter({f"<consulta-{i}@cliente.example>": 1 for i in range(MAILS)})
        assert opened == MAILS

        # One acknowledgement per case, from whichever process stored it.
        await eventually(lambda: len(relay.messages) >= MAILS, what="an acknowledgement per case")
        await asyncio.sleep(0.5)  # a duplicate ack would arrive about now
        assert Counter(m.rcpt_tos for m in relay.messages) == Counter(
            {(f"cliente{i}@cliente.example",): 1 for i in range(MAILS)})
