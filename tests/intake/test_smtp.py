"""Our SMTP server and outbound mail over real TCP: aiosmtplib and swaks deliver to the
running Service; our replies go through the outbox into a capturing SMTP sink."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from email.message import EmailMessage

import aiohttp
import aiosmtplib
import pytest
from sqlalchemy import func, select

from posventa.core.persistence.schema import cases, messages, outbox
from posventa.service import Service
from tests.fakes.smtp_sink import SmtpSink
from tests.support import API_TOKEN, free_port, make_config, require_or_skip


@pytest.fixture
async def sink():
    async with SmtpSink() as s:
        yield s


@pytest.fixture
async def running(database_url, tmp_path, sink):
    config = make_config(database_url, tmp_path, email={
        "enabled": True, "listen_port": free_port(), "domains": ("example.com",), "address": "support@example.com",
        "max_message_bytes": 200_000, "outbound": {"host": "127.0.0.1", "port": sink.port}})
    async with Service(config) as service:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            yield service, http


def mail(subject="Mi pedido no llegó", body="Hola, compré hace una semana y no llegó.", *, sender="ana@cliente.com",
         to="support@example.com", msgid="<c1@cliente.com>", **headers) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Ana Pérez <{sender}>"
    m["To"] = to
    m["Subject"] = subject
    if msgid:
        m["Message-ID"] = msgid
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body)
    return m


async def deliver(service, message: EmailMessage, *, recipients=None):
    return await aiosmtplib.send(message, hostname="127.0.0.1", port=service.smtp.bound_port,
                                 recipients=recipients, timeout=10)


async def scalar(db, q):
    async with db.engine.connect() as conn:
        return (await conn.execute(q)).scalar()


async def test_not_an_open_relay(running):
    service, _ = running
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        await deliver(service, mail(to="victim@elsewhere.org"), recipients=["victim@elsewhere.org"])
    assert info.value.recipients[0].code == 550 and "5.7.1" in info.value.recipients[0].message
    assert await scalar(service.db, select(func.count()).select_from(messages)) == 0


async def test_accepted_only_after_commit_and_deduped_by_message_id(running, db):
    service, _ = running
    _, reply = await deliver(service, mail())
    assert reply.startswith("2.0.0 OK: case #")
    number = int(reply.rsplit("#", 1)[1])
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == number))).one()
    assert row.title == "Mi pedido no llegó" and row.channel == "email"
    await deliver(service, mail(body="same id, second delivery"))
    assert await scalar(db, select(func.count()).select_from(messages).where(messages.c.direction == "in")) == 1


async def test_too_big_is_552(running):
    service, _ = running
    with pytest.raises(aiosmtplib.SMTPResponseException) as info:
        await deliver(service, mail(body="x" * 300_000))
    assert info.value.code == 552


async def test_storage_failure_answers_451_so_the_sender_retries(running, db):
    service, _ = running
    await service.inbox.stop()  # the inbox refuses: exactly what a failed commit looks like to SMTP
    with pytest.raises(aiosmtplib.SMTPResponseException) as info:
        await deliver(service, mail())
    assert info.value.code == 451 and "4.3.0" in info.value.message
    await service.inbox.start()
    await deliver(service, mail())  # the retry goes through
    assert await scalar(db, select(func.count()).select_from(messages).where(messages.c.direction == "in")) == 1


async def test_swaks_delivers_a_latin1_mail(running, db):
    service, _ = running
    require_or_skip(shutil.which("swaks") is not None, "swaks is not installed (apt-get install swaks)")
    proc = await asyncio.create_subprocess_exec(
        "swaks", "--server", f"127.0.0.1:{service.smtp.bound_port}", "--to", "support@example.com",
        "--from", "joao@cliente.com.br", "--header", "Subject: =?ISO-8859-1?Q?Nota_fiscal_n=E3o_chegou?=",
        "--header", "Content-Type: text/plain; charset=ISO-8859-1", "--body", "Ol\xe1, a nota n\xe3o chegou.",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode(errors="replace")
    title = await scalar(db, select(cases.c.title))
    assert title == "Nota fiscal não chegou"


async def test_full_round_trip_threads_both_ways(running, sink, db):
    service, http = running
    _, reply = await deliver(service, mail(msgid="<first@cliente.com>"))
    number = int(reply.rsplit("#", 1)[1])
    [ack] = await sink.wait_for(1)
    ack_msg = ack.message
    assert f"[#{number}]" in ack_msg["Subject"] and ack_msg["Auto-Submitted"] == "auto-replied"
    assert ack_msg["In-Reply-To"] == "<first@cliente.com>" and ack.rcpt_tos == ("ana@cliente.com",)
    reply_to = ack_msg["Reply-To"]
    assert reply_to.startswith("support+") and reply_to.endswith("@example.com")

    async with http.post(f"/api/v1/cases/{number}/reply", json={"text": "Ya salió: seguimiento AR123.", "agent": "maria"}) as r:
        assert r.status == 202
    agent_mail = (await sink.wait_for(2))[1].message
    assert agent_mail["In-Reply-To"] == "<first@cliente.com>" and "Auto-Submitted" not in agent_mail
    assert "AR123" in agent_mail.get_body(("plain",)).get_content()
    assert f"[#{number}]" in agent_mail["Subject"]

    answer = mail(subject=f"Re: {agent_mail['Subject']}", body="¡Gracias! Llegó hoy.\n\nOn Mon, Maria wrote:\n> Ya salió",
                  msgid="<second@cliente.com>", to=reply_to, In_Reply_To=agent_mail["Message-ID"],
                  References=f"<first@cliente.com> {agent_mail['Message-ID']}")
    _, reply2 = await deliver(service, answer, recipients=[reply_to])
    assert reply2.endswith(f"#{number}")
    async with db.engine.connect() as conn:
        texts = [r.text for r in await conn.execute(
            select(messages.c.text).where(messages.c.case_id == number, messages.c.direction == "in")
            .order_by(messages.c.id))]
    assert texts[-1].startswith("¡Gracias! Llegó hoy.") and "Ya salió" not in texts[-1]


async def test_auto_replies_are_stored_but_never_answered(running, sink, db):
    service, _ = running
    await deliver(service, mail(subject="Fuera de la oficina", msgid="<ooo@cliente.com>", Auto_Submitted="auto-replied"))
    await deliver(service, mail(subject="Newsletter", msgid="<nl@list.com>", sender="news@list.com",
                                List_Id="<news.list.com>", Precedence="bulk"))
    assert await scalar(db, select(func.count()).select_from(messages).where(messages.c.direction == "in")) == 2
    await asyncio.sleep(0.5)
    assert sink.messages == []
    assert await scalar(db, select(func.count()).select_from(outbox).where(outbox.c.channel == "email")) == 0


async def test_relay_4xx_is_retried_and_5xx_is_recorded_once_naming_the_relay(running, sink, db):
    service, http = running
    sink.replies = ["451 4.7.1 greylisted"]
    _, reply = await deliver(service, mail())
    number = int(reply.rsplit("#", 1)[1])
    await sink.wait_for(1, timeout=15)  # the ack, after one deferral
    sink.replies = ["550 5.1.1 mailbox unavailable"] * 10
    async with http.post(f"/api/v1/cases/{number}/reply", json={"text": "Hola"}) as r:
        assert r.status == 202
    for _ in range(100):
        async with db.engine.connect() as conn:
            statuses = {r.kind: r.status for r in await conn.execute(select(outbox))}
        if statuses.get("reply") == "failed":
            break
        await asyncio.sleep(0.1)
    assert statuses == {"ack": "sent", "reply": "failed"}
    async with http.get(f"/api/v1/cases/{number}") as r:
        case = await r.json()
    relay = f"relay 127.0.0.1:{sink.port} ([email.outbound])"
    [ack, answer] = [m for m in case["messages"] if m["direction"] == "out"]
    assert ack["delivery"]["state"] == "sent" and ack["delivery"]["attempts"] == 2
    assert answer["delivery"]["state"] == "failed"
    assert answer["delivery"]["error"] == f"{relay} refused: 550 5.1.1 mailbox unavailable"
    # Recorded once: a history entry, and no note repeating it in the conversation.
    failures = [e["detail"] for e in case["history"] if e["kind"] == "delivery_failed"]
    assert failures == [f"Delivery by email to ana@cliente.com failed: {relay} refused: 550 5.1.1 mailbox unavailable"]
    assert [m for m in case["messages"] if m["author"] == "note"] == []


async def test_an_unreachable_relay_is_named_with_its_config_section(tmp_path):
    from posventa.core.config import EmailConfig, EmailOutboundConfig
    from posventa.core.domain import ChannelName, ClaimedDelivery
    from posventa.core.errors import TransientDeliveryError
    from posventa.intake.email.channel import EmailChannel

    closed = free_port()  # nothing listens there
    channel = EmailChannel(config=EmailConfig(address="support@example.com",
                                              outbound=EmailOutboundConfig(host="127.0.0.1", port=closed)))
    with pytest.raises(TransientDeliveryError) as info:
        await channel.send(ClaimedDelivery(outbox_id=1, channel=ChannelName.EMAIL, recipient="ana@cliente.com",
                                           text="Hola", kind="reply", attempt=1))
    assert str(info.value) == f"relay 127.0.0.1:{closed} ([email.outbound]) unreachable: cannot connect"


async def test_no_header_injection_through_titles_or_text(running, sink):
    service, http = running
    async with http.post("/api/v1/cases", json={
            "title": "Pedido\r\nBcc: evil@attacker.com", "description": "x\r\nX-Injected: 1",
            "contact": {"email": "ana@cliente.com"}, "type": "request"}) as r:
        number = (await r.json())["number"]
    async with http.post(f"/api/v1/cases/{number}/reply", json={"text": "Hola\r\nBcc: evil@attacker.com\r\n\r\nbody"}) as r:
        assert r.status == 202
    [captured] = await sink.wait_for(1)
    assert captured.rcpt_tos == ("ana@cliente.com",)
    m = captured.message
    assert m["Bcc"] is None and m["X-Injected"] is None and "\n" not in m["Subject"]


@pytest.mark.parametrize("answer", ["2", "Reclamo", "reclamação", "complaint"])
async def test_replying_to_the_acknowledgement_answers_the_type_question(running, sink, db, answer):
    """The acknowledgement numbers the three types; the customer's "2" (or the word, in any
    of our languages) over real SMTP makes the case a complaint, quoted history and all."""
    service, _ = running
    _, reply = await deliver(service, mail(msgid="<first@cliente.com>"))
    number = int(reply.rsplit("#", 1)[1])
    [ack] = await sink.wait_for(1)
    ack_msg = ack.message
    ack_text = ack_msg.get_body(("plain",)).get_content()
    assert "1) Solicitud" in ack_text and "2) Reclamo" in ack_text and "3) Incidente" in ack_text
    quoted = "\n".join("> " + line for line in ack_text.splitlines())
    body = f"{answer}\n\nEl lun, 7 dic 2026 a las 9:00, Soporte <support@example.com> escribió:\n{quoted}\n"
    reply_to = ack_msg["Reply-To"]
    _, reply2 = await deliver(service, mail(subject=f"Re: {ack_msg['Subject']}", body=body, msgid="<second@cliente.com>",
                                            to=reply_to, In_Reply_To=ack_msg["Message-ID"],
                                            References=f"<first@cliente.com> {ack_msg['Message-ID']}"),
                              recipients=[reply_to])
    assert reply2.endswith(f"#{number}")
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(cases.c.case_type).where(cases.c.id == number))).one()
    assert row.case_type == "complaint"
    async with db.engine.connect() as conn:
        stored = (await conn.execute(select(messages.c.text, messages.c.extra).where(
            messages.c.case_id == number, messages.c.direction == "in").order_by(messages.c.id.desc()))).first()
    # The agent reads the answer, and can still open the full original with its history.
    assert stored.text == answer and "escribió:" in stored.extra["original"]
    assert stored.extra["choice"] == {"question": f"case_type:{number}", "value": "complaint"}
    confirmation = (await sink.wait_for(2))[1].message
    assert "Anotado: Reclamo" in confirmation.get_body(("plain",)).get_content()
