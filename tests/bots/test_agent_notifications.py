"""Agent notifications through the outbox, on both databases: a case assigned
automatically reaches its agent as a private Telegram message from the bot (the fake Bot
API) and as an email (through the real SMTP channel into a sink), and not on a channel
the agent turned off."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from posventa.core.config import CalendarConfig
from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.persistence.schema import messages, outbox
from posventa.service import Service
from tests.bots.conftest import AGENT, telegram_section
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.telegram_api import FakeTelegram
from tests.support import free_port, make_config

ALWAYS = {d: ("00:00-24:00",) for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


async def test_an_assigned_agent_gets_a_telegram_message_and_an_email(database_url, tmp_path, tg: FakeTelegram):
    tg.forum(-1001987654321)
    async with SmtpSink() as sink:
        config = make_config(database_url, tmp_path, telegram=telegram_section(tg),
                             assignment={"enabled": True},
                             email={"enabled": True, "listen_port": free_port(), "domains": ("example.com",),
                                    "address": "support@example.com",
                                    "outbound": {"host": "127.0.0.1", "port": sink.port}})
        config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone="UTC", **ALWAYS),))
        service = Service(config)
        await service.start()
        try:
            user = await service.console.users.create("lucia", "correct horse battery staple", role="agent")
            await service.assigner.update_agent(user.id, available=True, telegram_user_id=AGENT,
                                                email="lucia@team.example")
            receipt = await service.inbox.receive(InboundMessage(
                channel=ChannelName.EMAIL, external_id="<n1@cliente.example>", sender="ana@cliente.example",
                text="No funciona la impresora", subject="Impresora"))
            number = receipt.case_number
            call = await tg.wait_for_call("sendMessage", lambda c: str(c.params["chat_id"]) == str(AGENT))
            assert f"#{number}" in call.params["text"] and "Impresora" in call.params["text"]
            # The customer's acknowledgement and the agent's notice: two mails.
            captured = await sink.wait_for(2)
            [notice] = [c for c in captured if c.rcpt_tos == ("lucia@team.example",)]
            assert f"#{number}" in notice.message.get_body(("plain",)).get_content()
            # Internal: nothing of it shows in the case's conversation.
            async with service.db.engine.connect() as conn:
                texts = (await conn.execute(select(messages.c.text).where(messages.c.case_id == number))).scalars()
                assert not any("asign" in t for t in texts)

            # Email turned off for assignments: the next one goes to Telegram only.
            await service.assigner.update_agent(user.id, notify={"assigned": {"email": False}})
            second = await service.inbox.receive(InboundMessage(
                channel=ChannelName.EMAIL, external_id="<n2@cliente.example>", sender="leo@cliente.example",
                text="Otra consulta", subject="Factura"))
            await tg.wait_for_call("sendMessage", lambda c: f"#{second.case_number}" in c.params.get("text", ""))
            async with service.db.engine.connect() as conn:
                channels = (await conn.execute(select(outbox.c.channel).where(
                    outbox.c.case_id == second.case_number, outbox.c.kind == "agent_notice"))).scalars().all()
            assert channels == ["telegram"]
        finally:
            await service.stop()


async def test_sla_warning_breach_and_customer_wrote_reach_the_agent_once(database_url, tmp_path, tg: FakeTelegram):
    from datetime import UTC, datetime, timedelta

    from posventa.core.domain import ThreadHints
    from tests.support import FakeClock

    tg.forum(-1001987654321)
    clock = FakeClock(datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
    config = make_config(database_url, tmp_path, telegram=telegram_section(tg), assignment={"enabled": True},
                         sla={"first_response_minutes": 60, "warn_before_minutes": 15})
    config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone="UTC", **ALWAYS),))
    service = Service(config, clock=clock)
    await service.start()
    try:
        user = await service.console.users.create("lucia", "correct horse battery staple", role="agent")
        await service.assigner.update_agent(user.id, available=True, telegram_user_id=AGENT)
        number = (await service.inbox.receive(InboundMessage(
            channel=ChannelName.EMAIL, external_id="<w1@cliente.example>", sender="ana@cliente.example",
            text="Hola", subject="Consulta"))).case_number
        await tg.wait_for_call("sendMessage", lambda c: "asignaron" in c.params.get("text", ""))

        async def events() -> list[str]:
            async with service.db.engine.connect() as conn:
                payloads = (await conn.execute(select(outbox.c.payload).where(
                    outbox.c.kind == "agent_notice", outbox.c.case_id == number).order_by(outbox.c.id))).scalars()
                return [p["extra"]["event"] for p in payloads]

        notifier = service.agent_notifier
        assert await notifier.sweep(timedelta(minutes=15)) == (0, 0)  # due 13:00, 60 minutes away
        clock.advance(minutes=50)
        assert await notifier.sweep(timedelta(minutes=15)) == (1, 0)
        assert await notifier.sweep(timedelta(minutes=15)) == (0, 0)  # once per due time
        await tg.wait_for_call("sendMessage", lambda c: "vence a las 13:00" in c.params.get("text", ""))
        clock.advance(minutes=11)
        assert await notifier.sweep(timedelta(minutes=15)) == (0, 1)
        assert await notifier.sweep(timedelta(minutes=15)) == (0, 0)
        await tg.wait_for_call("sendMessage", lambda c: "venció la primera respuesta" in c.params.get("text", ""))
        case = await service.cases.get_case(number)
        assert case["sla_breached"] == {"target": "first_response", "at": "2026-12-04T13:00:00+00:00"}

        await service.inbox.receive(InboundMessage(
            channel=ChannelName.EMAIL, external_id="<w2@cliente.example>", sender="ana@cliente.example",
            text="¿Novedades?", subject="Re: Consulta", thread=ThreadHints(case_number=number)))
        await tg.wait_for_call("sendMessage", lambda c: "El cliente escribió" in c.params.get("text", ""))
        assert await events() == ["assigned", "sla_warning", "sla_breached", "customer_wrote"]
    finally:
        await service.stop()


async def test_an_agent_given_a_case_that_breached_while_nobody_had_it_is_told(database_url, tmp_path,
                                                                               tg: FakeTelegram):
    from datetime import UTC, datetime, timedelta

    from tests.support import FakeClock

    tg.forum(-1001987654321)
    clock = FakeClock(datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
    config = make_config(database_url, tmp_path, telegram=telegram_section(tg), assignment={"enabled": True},
                         sla={"first_response_minutes": 60, "warn_before_minutes": 15})
    config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone="UTC", **ALWAYS),))
    service = Service(config, clock=clock)
    await service.start()
    try:
        # Nobody is available: the case waits unassigned and breaches at 13:00.
        user = await service.console.users.create("lucia", "correct horse battery staple", role="agent")
        number = (await service.inbox.receive(InboundMessage(
            channel=ChannelName.EMAIL, external_id="<b1@cliente.example>", sender="ana@cliente.example",
            text="Hola", subject="Consulta"))).case_number
        clock.advance(minutes=61)
        await service.agent_notifier.sweep(timedelta(minutes=15))  # or the service's own SLA watch
        case = await service.cases.get_case(number)
        assert case["sla_breached"] is not None and case["assigned_agent"] is None

        # Lucía comes in and gets it: she hears it is assigned, and that it has breached.
        await service.assigner.update_agent(user.id, available=True, telegram_user_id=AGENT)
        await service.assigner.sweep()  # or the service's own assignment job, whichever runs first
        assert (await service.cases.get_case(number))["assigned_agent"] == "lucia"
        await tg.wait_for_call("sendMessage", lambda c: "venció la primera respuesta" in c.params.get("text", ""))
        async with service.db.engine.connect() as conn:
            payloads = (await conn.execute(select(outbox.c.payload).where(
                outbox.c.kind == "agent_notice", outbox.c.case_id == number).order_by(outbox.c.id))).scalars()
            assert [p["extra"]["event"] for p in payloads] == ["assigned", "sla_breached"]
        # The watch does not tell it again.
        assert await service.agent_notifier.sweep(timedelta(minutes=15)) == (0, 0)
    finally:
        await service.stop()


async def test_an_agent_given_a_case_by_hand_is_told_but_not_when_taking_it_themselves(database_url, tmp_path,
                                                                                       tg: FakeTelegram):
    tg.forum(-1001987654321)
    config = make_config(database_url, tmp_path, telegram=telegram_section(tg), assignment={"enabled": True})
    config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone="UTC", **ALWAYS),))
    service = Service(config)
    await service.start()
    try:
        leo = await service.console.users.create("leo", "correct horse battery staple", role="agent")
        await service.console.users.create("marta", "correct horse battery staple", role="manager")
        await service.assigner.update_agent(leo.id, telegram_user_id=AGENT)  # not available: nothing automatic
        number = (await service.inbox.receive(InboundMessage(
            channel=ChannelName.EMAIL, external_id="<m1@cliente.example>", sender="ana@cliente.example",
            text="Hola", subject="Consulta"))).case_number

        async def notices() -> list[tuple[str, str]]:
            async with service.db.engine.connect() as conn:
                payloads = (await conn.execute(select(outbox.c.payload).where(
                    outbox.c.kind == "agent_notice", outbox.c.case_id == number).order_by(outbox.c.id))).scalars()
                return [(p["extra"]["agent"], p["extra"]["event"]) for p in payloads]

        # A manager gives it to Leo (the console's select, the API, the desk's /assign): he hears it.
        await service.cases.assign(number, "leo", agent="marta")
        call = await tg.wait_for_call("sendMessage", lambda c: "asignaron" in c.params.get("text", ""))
        assert f"#{number}" in call.params["text"]
        assert await notices() == [("leo", "assigned")]
        # The same assignment again, or Leo taking a case himself, tells nobody.
        await service.cases.assign(number, "leo", agent="marta")
        await service.cases.assign(number, None, agent="leo")
        await service.cases.assign(number, "leo", agent="leo")
        assert await notices() == [("leo", "assigned")]
    finally:
        await service.stop()


async def test_each_agent_is_told_in_their_profile_language_else_the_default(database_url, tmp_path,
                                                                             tg: FakeTelegram):
    """Notices follow the language on the agent's profile; an agent who chose none gets
    ``[service] default_language`` (es here). The SLA target's name follows it too."""
    from datetime import UTC, datetime, timedelta

    from tests.support import FakeClock

    tg.forum(-1001987654321)
    clock = FakeClock(datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
    config = make_config(database_url, tmp_path, telegram=telegram_section(tg), assignment={"enabled": True},
                         sla={"first_response_minutes": 60, "warn_before_minutes": 15})
    config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone="UTC", **ALWAYS),))
    assert config.service.default_language == "es"
    service = Service(config, clock=clock)
    await service.start()
    try:
        joana = await service.console.users.create("joana", "correct horse battery staple", role="agent")
        await service.console.users.set_locale(joana.id, language="pt", timezone=None)
        await service.assigner.update_agent(joana.id, available=True, telegram_user_id=AGENT)
        first = (await service.inbox.receive(InboundMessage(
            channel=ChannelName.EMAIL, external_id="<l1@cliente.example>", sender="ana@cliente.example",
            text="Olá", subject="Garantia"))).case_number
        call = await tg.wait_for_call("sendMessage", lambda c: str(c.params["chat_id"]) == str(AGENT)
                                    and f"#{first}" in c.params.get("text", ""))
        assert call.params["text"].startswith(f"O caso #{first} foi atribuído a você: Garantia")
        clock.advance(minutes=50)
        assert await service.agent_notifier.sweep(timedelta(minutes=15)) == (1, 0)
        await tg.wait_for_call("sendMessage", lambda c: "a primeira resposta vence às 13:00" in c.params.get("text", ""))

        # Without a language on the profile: the service's default.
        await service.console.users.set_locale(joana.id, language=None, timezone=None)
        second = (await service.inbox.receive(InboundMessage(
            channel=ChannelName.EMAIL, external_id="<l2@cliente.example>", sender="leo@cliente.example",
            text="Hola", subject="Factura"))).case_number
        call = await tg.wait_for_call("sendMessage", lambda c: str(c.params["chat_id"]) == str(AGENT)
                                    and f"#{second}" in c.params.get("text", ""))
        assert call.params["text"].startswith(f"Te asignaron el caso #{second}: Factura")
        async with service.db.engine.connect() as conn:
            languages = (await conn.execute(select(outbox.c.payload).where(
                outbox.c.kind == "agent_notice").order_by(outbox.c.id))).scalars().all()
        assert [p["language"] for p in languages] == ["pt", "pt", "es"]
    finally:
        await service.stop()


async def test_an_agent_replying_to_a_notice_email_opens_no_case_and_gets_no_acknowledgement(
        database_url, tmp_path, caplog):
    """The notice mail says it is automatic and has a Message-ID of its own form; an agent's
    mail client answering it (no Reply-To on a notice: to our address) reaches the SMTP
    intake, which accepts it and drops it, naming why: no case, no acknowledgement. A
    customer's reply to their own acknowledgement still threads into their case."""
    import logging
    from email.message import EmailMessage

    import aiosmtplib
    from sqlalchemy import func

    from posventa.core.persistence.schema import cases

    async with SmtpSink() as sink:
        config = make_config(database_url, tmp_path, assignment={"enabled": True},
                             email={"enabled": True, "listen_port": free_port(), "domains": ("example.com",),
                                    "address": "support@example.com",
                                    "outbound": {"host": "127.0.0.1", "port": sink.port}})
        config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone="UTC", **ALWAYS),))
        service = Service(config)
        await service.start()
        try:
            user = await service.console.users.create("lucia", "correct horse battery staple", role="agent")
            await service.assigner.update_agent(user.id, available=True, email="lucia@team.example")

            def mail(sender: str, msgid: str, subject: str, to: str, **headers: str) -> EmailMessage:
                m = EmailMessage()
                m["From"], m["To"], m["Subject"], m["Message-ID"] = sender, to, subject, msgid
                for key, value in headers.items():
                    m[key.replace("_", "-")] = value
                m.set_content("Gracias, lo miro.")
                return m

            async def deliver(m: EmailMessage) -> str:
                _, reply = await aiosmtplib.send(m, hostname="127.0.0.1", port=service.smtp.bound_port,
                                                 recipients=[m["To"]], timeout=10)
                return reply

            reply = await deliver(mail("ana@cliente.example", "<g1@cliente.example>", "Garantia",
                                       "support@example.com"))
            number = int(reply.rsplit("#", 1)[1])
            captured = await sink.wait_for(2)
            [notice] = [c.message for c in captured if c.rcpt_tos == ("lucia@team.example",)]
            [ack] = [c.message for c in captured if c.rcpt_tos == ("ana@cliente.example",)]
            assert notice["Auto-Submitted"] == "auto-generated" and notice["Reply-To"] is None
            assert notice["Message-ID"].startswith("<pv.notice.") and not ack["Message-ID"].startswith("<pv.notice.")

            async def counts() -> tuple[int, int]:
                async with service.db.engine.connect() as conn:
                    n_cases = (await conn.execute(select(func.count()).select_from(cases))).scalar_one()
                    n_out = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
                return n_cases, n_out

            before = await counts()
            caplog.set_level(logging.INFO, logger="posventa.intake.email.server")
            # Lucía's mail client answers the notice: to its From, in its thread.
            answer = mail("lucia@team.example", "<r1@team.example>", f"Re: {notice['Subject']}",
                          notice["From"], In_Reply_To=notice["Message-ID"], References=notice["Message-ID"])
            assert (await deliver(answer)).startswith("2.0.0 OK: a reply to an agent notification")
            # Her out-of-office robot, quoting only References, is dropped the same way.
            robot = mail("lucia@team.example", "<r2@team.example>", "Ausente", notice["From"],
                         References=f"<other@team.example> {notice['Message-ID']}")
            assert (await deliver(robot)).startswith("2.0.0 OK: a reply to an agent notification")
            # No case, no acknowledgement, nothing queued at all.
            assert await counts() == before
            dropped = [r for r in caplog.records if "reply to an agent notification" in r.getMessage()]
            assert len(dropped) == 2 and "team.example" in dropped[0].getMessage()

            # The customer's reply to her acknowledgement still joins her case.
            again = mail("ana@cliente.example", "<g2@cliente.example>", f"Re: {ack['Subject']}",
                         ack["Reply-To"] or ack["From"], In_Reply_To=ack["Message-ID"], References=ack["Message-ID"])
            assert (await deliver(again)).endswith(f"case #{number}")
        finally:
            await service.stop()
