"""Web chat and console live updates across processes (LISTEN/NOTIFY).

Two serve processes, A and B. The visitor's socket is on A; the agent replies through
B's API, so B's outbox worker claims the push (A polls its outbox only every 30 s) and
must reach the socket on A. When the visitor is gone from everywhere, the reply waits in
the outbox and then goes by email, exactly as with one process. An agent's console page
open on B hears about a message stored by A.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from sqlalchemy import select

from posventa.core.domain import ChannelName
from posventa.core.persistence.schema import outbox
from tests.fakes.smtp_sink import SmtpSink
from tests.intake.console.harness import PASSWORD, ConsoleClient
from tests.intake.webchat.support import ChatClient
from tests.scaleout.cluster import eventually
from tests.support import API_TOKEN, free_port

pytestmark = pytest.mark.postgres  # skipped without PostgreSQL (see conftest.py)

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def sections(relay_port: int, *, outbox_poll: float) -> dict:
    return {
        "webchat": {"enabled": True, "email_fallback_after_seconds": 8},
        "email": {"enabled": True, "listen_port": free_port(), "domains": ["example.com"],
                  "address": "support@example.com", "outbound": {"host": "127.0.0.1", "port": relay_port}},
        "outbox": {"poll_seconds": outbox_poll, "base_delay_seconds": 0.2, "max_delay_seconds": 2.0},
    }


async def reply(http: aiohttp.ClientSession, base: str, case: int, text: str, *,
                file: tuple[str, bytes] | None = None) -> int:
    if file is None:
        body: dict = {"json": {"text": text, "agent": "Eva"}}
    else:
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("text", text)
        form.add_field("agent", "Eva")
        form.add_field("files", file[1], filename=file[0])
        body = {"data": form}
    async with http.post(f"{base}/api/v1/cases/{case}/reply", headers=AUTH, **body) as r:
        assert r.status == 202, await r.text()
        return (await r.json())["outbox_id"]


async def next_event(stream: aiohttp.ClientResponse) -> dict:
    while True:
        line = (await stream.content.readline()).decode()
        if line.startswith("data: "):
            return json.loads(line[6:])


async def test_pushes_and_console_events_cross_processes_and_email_fallback_still_works(cluster, db):
    async with SmtpSink() as relay:
        a = cluster.spawn("a", **sections(relay.port, outbox_poll=30))
        b = cluster.spawn("b", **sections(relay.port, outbox_poll=0.2))
        added = cluster.cli("users", "add", "eva", "--role", "agent", "--password-stdin", stdin=PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
        await cluster.wait_up(a, b)

        async with aiohttp.ClientSession() as http, ConsoleClient(b.base) as agent:
            assert (await agent.login("eva"))[0] == 200
            async with agent.http.get(f"{b.base}/console/events") as stream:
                while (await stream.content.readline()).strip() != b": connected":
                    pass

                # --- the visitor writes on A; the page open on B hears of it -------------
                visitor = await ChatClient.connect(http, a.base)
                await visitor.hello(lang="es", name="Ana", email="ana@cliente.example")
                ack = await visitor.say("c-1", "Hola, mi impresora no imprime")
                assert ack["type"] == "ack", ack
                case = ack["case"]
                event = await asyncio.wait_for(next_event(stream), 10)
                assert event["case"] == case and event["channel"] == "webchat" and event["new_case"] is True

            # --- B claims the agent's reply; it reaches the socket on A, live ------------
            manual = b"%PDF-1.4\n%%EOF\n"
            await reply(http, b.base, case, "Hola Ana, soy Eva desde B", file=("manual.pdf", manual))
            frame = await visitor.next(lambda f: f["type"] == "message" and f.get("from") == "agent")
            assert frame["text"] == "Hola Ana, soy Eva desde B"
            # The file's link came along with the push from B, and opens for this session.
            [attached] = frame["attachments"]
            assert attached["filename"] == "manual.pdf" and attached["url"] == f"/chat/files/{attached['id']}"
            async with http.get(a.base + attached["url"], headers={"Authorization": f"Bearer {visitor.session}"}) as r:
                assert r.status == 200 and await r.read() == manual
            fanout = {n.name: {k[1]: v for k, v in (await n.metrics()).items() if k[0] == "posventa_webchat_fanout_total"}
                      for n in (a, b)}
            assert fanout["b"].get('event="confirmed"', 0) >= 1, fanout
            assert fanout["a"].get('event="delivered"', 0) >= 1, fanout
            last_seen = frame["message_id"]

            # --- the visitor leaves: the next reply waits, then goes by email ----------
            await visitor.ws.close()
            outbox_id = await reply(http, b.base, case, "¿Pudiste probar el cartucho nuevo?")

            async def status():
                async with db.engine.connect() as conn:
                    return (await conn.execute(select(outbox.c.status, outbox.c.external_id)
                                               .where(outbox.c.id == outbox_id))).one()

            waiting = await eventually(lambda: _when(status, lambda s: s.status == "awaiting_retry"),
                                       what="the reply waiting in the outbox")
            assert waiting.status == "awaiting_retry"  # nobody took it: no ack from A either
            mail = await eventually(lambda: _found(relay, "cartucho nuevo"), timeout=30, what="the email fallback")
            assert mail.rcpt_tos == ("ana@cliente.example",)
            done = await eventually(lambda: _when(status, lambda s: s.status == "sent"), what="the item settled")
            assert done.external_id == "webchat:email-fallback"

            # --- back on B this time: the history replays what was missed, once --------
            again = await ChatClient.connect(http, b.base)
            await again.hello(session=visitor.session, last_seen=last_seen, lang="es")
            missed = await again.next(lambda f: f["type"] == "message" and f.get("from") == "agent")
            assert missed["text"] == "¿Pudiste probar el cartucho nuevo?"
            await again.ws.close()
        async with db.engine.connect() as conn:
            emails = (await conn.execute(select(outbox.c.id).where(outbox.c.channel == ChannelName.EMAIL.value,
                                                                   outbox.c.kind == "reply"))).all()
        assert len(emails) == 1  # the fallback happened once, whichever process tried


async def _when(read, predicate):
    value = await read()
    return value if predicate(value) else None


async def _found(relay: SmtpSink, needle: str):
    for captured in relay.messages:
        body = captured.message.get_body(preferencelist=("plain",))
        if body is not None and needle in body.get_content():
            return captured
    return None
