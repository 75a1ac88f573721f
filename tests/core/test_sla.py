"""SLA targets end to end on both databases: a running Service with an injected clock,
customer messages through the inbox, agents' actions through the API, due times read
back from the API's case objects and its overdue / due-sorted lists."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import select

from posventa.core.config import CalendarConfig, SlaPolicyConfig
from posventa.core.domain import ChannelName, InboundMessage, ThreadHints
from posventa.core.notifications import AgentNotifier
from posventa.core.persistence.schema import outbox
from posventa.service import Service
from tests.intake.webchat.support import ChatClient
from tests.support import API_TOKEN, FakeClock, RecordingChannel, make_config

BA = ZoneInfo("America/Argentina/Buenos_Aires")
# 2026-12-04 is a Friday; Monday 2026-12-07 is a holiday of the team's calendar.
FRIDAY_1730 = datetime(2026, 12, 4, 17, 30, tzinfo=BA)


def ba(day: int, hour: int, minute: int = 0) -> str:
    return datetime(2026, 12, day, hour, minute, tzinfo=BA).astimezone(UTC).isoformat()


@pytest.fixture
async def running(database_url, tmp_path):
    clock = FakeClock(FRIDAY_1730.astimezone(UTC))
    config = make_config(database_url, tmp_path, webchat={"enabled": True}, sla={
        "first_response_minutes": 120, "next_response_minutes": 60,
        "resolution_minutes": 9 * 60 * 2,
        "policies": (SlaPolicyConfig(name="incidents", types=("incident",), first_response_minutes=30,
                                     next_response_minutes=30, resolution_minutes=240),),
    })
    office = CalendarConfig(name="default", timezone=BA.key, closed_days=("2026-12-07",))
    config = dataclasses.replace(config, calendars=(office,))
    service = Service(config, clock=clock)
    email = RecordingChannel(ChannelName.EMAIL)
    service.channels[ChannelName.EMAIL] = email
    async with service:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            yield service, http, clock


async def write(service: Service, n: int, text: str = "La impresora no imprime", **kw) -> int:
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=f"<m{n}@cliente.example>", sender="ana@cliente.example",
        text=text, subject=kw.pop("subject", f"Consulta {n}"), language="es", **kw))
    assert receipt.case_number is not None
    return receipt.case_number


async def get(http, path: str, status: int = 200):
    async with http.get(f"/api/v1{path}") as r:
        body = await r.json()
        assert r.status == status, body
        return body


async def post(http, path: str, body: dict, status: int = 200, method: str = "POST"):
    async with http.request(method, f"/api/v1{path}", json=body) as r:
        answer = await r.json()
        assert r.status == status, answer
        return answer


async def test_friday_1730_with_monday_holiday_is_due_tuesday_1030(running):
    service, http, _ = running
    number = await write(service, 1)
    case = await get(http, f"/cases/{number}")
    assert case["sla_policy"] == "default"
    assert case["first_response_due_at"] == ba(8, 10, 30)
    # Resolution: 18 business hours = Friday's last 30 minutes, Tuesday's 9 hours, 8h30 Wednesday.
    assert case["resolution_due_at"] == ba(9, 17, 30)
    assert (case["due_at"], case["due_target"], case["sla_breached"]) == (ba(8, 10, 30), "first_response", None)
    # Outside hours the acknowledgement says when the team opens, in the customer's language.
    async with service.db.engine.connect() as conn:
        acks = (await conn.execute(select(outbox.c.payload).where(outbox.c.case_id == number,
                                                                   outbox.c.kind == "ack"))).scalars().all()
    assert len(acks) == 1
    assert "abrimos el lunes" not in acks[0]["text"]  # Monday is the holiday
    assert "fuera de horario" not in acks[0]["text"]  # 17:30 is still open


async def test_the_acknowledgement_out_of_hours_names_the_next_opening(running):
    service, _, clock = running
    clock.advance(hours=1)  # Friday 18:30
    number = await write(service, 1)
    async with service.db.engine.connect() as conn:
        ack = (await conn.execute(select(outbox.c.payload).where(outbox.c.case_id == number,
                                                                  outbox.c.kind == "ack"))).scalar_one()
    assert "abrimos el martes 8 a las 09:00 (America/Argentina/Buenos_Aires)" in ack["text"]


async def test_the_clock_pauses_at_answer_sent_and_resumes_on_the_customers_reply(running):
    service, http, clock = running
    number = await write(service, 1)
    clock.current = datetime(2026, 12, 8, 10, 0, tzinfo=BA).astimezone(UTC)  # Tuesday 10:00
    await post(http, f"/cases/{number}/reply", {"text": "Reinicie la impresora", "agent": "ana"}, status=202)
    await post(http, f"/cases/{number}", {"type": "request", "agent": "ana"}, method="PATCH")
    case = await post(http, f"/cases/{number}/activity", {"activity": "answer_sent", "agent": "ana"})
    assert case["first_response_at"] == ba(8, 10) and case["sla_breached"] is None
    assert case["sla_paused"] is True and case["due_at"] is None
    overdue_later = await get(http, "/cases?overdue=true")
    assert overdue_later["cases"] == []

    # The customer answers Wednesday 12:00: 11 business hours paused (Tue 10-18, Wed 9-12).
    clock.current = datetime(2026, 12, 9, 12, 0, tzinfo=BA).astimezone(UTC)
    await write(service, 2, text="Sigue sin imprimir", thread=ThreadHints(case_number=number),
                subject=f"Re: [#{number}] Consulta 1")
    case = await get(http, f"/cases/{number}")
    assert case["activity"] == "preliminary_analysis" and case["sla_paused"] is False
    # Resolution moved by the 11 paused business hours: Wed 17:30 + 11h = Fri 11 10:30.
    assert case["resolution_due_at"] == ba(11, 10, 30)
    # The customer's message starts a next-response target: an hour of business time.
    assert (case["next_response_due_at"], case["due_at"], case["due_target"]) == \
        (ba(9, 13), ba(9, 13), "next_response")
    assert any(h["kind"] == "activity" and h["actor"] == "customer" for h in case["history"])

    # Missed: it shows as breached (next response) and in the overdue list.
    clock.current = datetime(2026, 12, 9, 13, 5, tzinfo=BA).astimezone(UTC)
    case = await get(http, f"/cases/{number}")
    assert case["sla_breached"] == {"target": "next_response", "at": ba(9, 13)}
    assert case["sla_status"] == "breached"
    assert [c["number"] for c in (await get(http, "/cases?overdue=true"))["cases"]] == [number]
    # The late answer records the breach for good.
    await post(http, f"/cases/{number}/reply", {"text": "Enviamos un técnico", "agent": "ana"}, status=202)
    clock.advance(days=30)
    case = await get(http, f"/cases/{number}")
    assert case["next_response_due_at"] is None and case["due_target"] == "resolution"
    assert case["sla_breached"] == {"target": "next_response", "at": ba(9, 13)}


async def test_a_customer_reopening_a_closed_case_restarts_its_targets(running):
    """core.sla.reopened: the targets start again as for a new customer message, the
    resolution target in full, whatever the clock was doing when the case closed."""
    service, http, clock = running
    answered = await write(service, 1)
    silent = await write(service, 2, subject="Otra consulta")
    clock.current = datetime(2026, 12, 8, 10, 0, tzinfo=BA).astimezone(UTC)  # Tuesday 10:00
    await post(http, f"/cases/{answered}/reply", {"text": "Reinicie la impresora", "agent": "ana"}, status=202)
    for number in (answered, silent):
        await post(http, f"/cases/{number}", {"type": "request", "agent": "ana"}, method="PATCH")
    # One closes while paused (waiting for the customer), the other without any answer.
    await post(http, f"/cases/{answered}/activity", {"activity": "answer_sent", "agent": "ana"})
    clock.current = datetime(2026, 12, 8, 11, 0, tzinfo=BA).astimezone(UTC)
    for number in (answered, silent):
        case = await post(http, f"/cases/{number}/activity", {"activity": "closed", "agent": "ana"})
        assert case["due_at"] is None

    # Wednesday 12:00, within [cases] reopen_days: both customers write again.
    clock.current = datetime(2026, 12, 9, 12, 0, tzinfo=BA).astimezone(UTC)
    for n, number in ((3, answered), (4, silent)):
        assert await write(service, n, text="Sigue sin imprimir", thread=ThreadHints(case_number=number),
                           subject=f"Re: [#{number}] Consulta") == number
    # Resolution in full from now: 18 business hours = Wed 12-18, Thu 9-18, Fri 9-12.
    case = await get(http, f"/cases/{answered}")
    assert case["activity"] == "preliminary_analysis" and case["sla_paused"] is False
    assert case["resolution_due_at"] == ba(11, 12)
    assert (case["next_response_due_at"], case["due_at"], case["due_target"]) == \
        (ba(9, 13), ba(9, 13), "next_response")
    case = await get(http, f"/cases/{silent}")
    assert case["activity"] == "preliminary_analysis" and case["first_response_at"] is None
    assert case["resolution_due_at"] == ba(11, 12) and case["next_response_due_at"] is None
    assert (case["first_response_due_at"], case["due_at"], case["due_target"]) == \
        (ba(9, 14), ba(9, 14), "first_response")
    assert case["sla_breached"] is None and case["sla_status"] == "ok"
    assert [c["number"] for c in (await get(http, "/cases?sort=due"))["cases"]][:2] == [answered, silent]

    # The restarted targets hold when the clock pauses and resumes again.
    await post(http, f"/cases/{answered}/reply", {"text": "Pruebe ahora", "agent": "ana"}, status=202)
    await post(http, f"/cases/{answered}/activity", {"activity": "answer_sent", "agent": "ana"})
    clock.current = datetime(2026, 12, 9, 14, 0, tzinfo=BA).astimezone(UTC)
    await write(service, 5, text="Ahora sí", thread=ThreadHints(case_number=answered),
                subject=f"Re: [#{answered}] Consulta")
    case = await get(http, f"/cases/{answered}")
    # Paused from Wednesday 12:00 (the answer) to 14:00: resolution moves two hours.
    assert case["activity"] == "preliminary_analysis" and case["resolution_due_at"] == ba(11, 14)


async def test_a_policy_matches_by_type_and_reclassifying_moves_the_targets(running):
    service, http, _ = running
    number = await write(service, 1)
    case = await post(http, f"/cases/{number}", {"type": "incident", "agent": "ana"}, method="PATCH")
    assert case["sla_policy"] == "incidents"
    # 30 business minutes from Friday 17:30: Friday 18:00 exactly.
    assert case["first_response_due_at"] == ba(4, 18)


async def test_overdue_due_before_and_due_sort(running):
    service, http, clock = running
    first = await write(service, 1)
    await post(http, f"/cases/{first}", {"type": "incident", "agent": "ana"}, method="PATCH")  # due Friday 18:00
    second = await write(service, 2)  # due Tuesday 10:30
    done = await write(service, 3)
    await post(http, f"/cases/{done}", {"type": "request", "agent": "ana"}, method="PATCH")
    await post(http, f"/cases/{done}/activity", {"activity": "closed", "agent": "ana"})
    by_due = await get(http, "/cases?sort=due")
    assert [c["number"] for c in by_due["cases"]] == [first, second, done]
    assert [c["number"] for c in (await get(http, "/cases?sort=due&limit=1&offset=2"))["cases"]] == [done]
    before = (await get(http, f"/cases?due_before={ba(5, 0).replace('+00:00', 'Z')}"))["cases"]
    assert [c["number"] for c in before] == [first]
    assert (await get(http, "/cases?overdue=1"))["cases"] == []
    clock.advance(minutes=31)
    overdue = (await get(http, "/cases?overdue=true"))["cases"]
    assert [(c["number"], c["sla_status"]) for c in overdue] == [(first, "breached")]


@pytest.mark.parametrize("query,field", [
    ("due_before=yesterday", "due_before"), ("due_before=2026-12-07T10:00:00", "due_before"),
    ("overdue=maybe", "overdue"), ("sort=random", "sort"),
])
async def test_bad_filters_are_422_naming_the_field(running, query, field):
    _, http, _ = running
    body = await get(http, f"/cases?{query}", status=422)
    assert body.get("field") == field, body


async def test_prometheus_gauges_count_running_and_overdue_cases(running):
    service, http, clock = running
    await write(service, 1)
    clock.advance(days=5)
    async with http.get("/metrics") as r:
        text = await r.text()
    assert "posventa_sla_running_cases 1.0" in text and "posventa_sla_overdue_cases 1.0" in text


async def test_every_breach_is_recorded_with_its_due_time(running):
    """First response late, two next responses late (one seen by the sweep first, one by
    the late reply), then the resolution: four breaches, the first still ``sla_breached``."""
    service, http, clock = running
    notifier = AgentNotifier(db=service.db, outgoing=service.outgoing, clock=clock, public_url="http://x",
                             language="es", tz=BA)
    number = await write(service, 1)  # first response due Tuesday 10:30, resolution Wednesday 17:30

    def at(day: int, hour: int, minute: int = 0) -> None:
        clock.current = datetime(2026, 12, day, hour, minute, tzinfo=BA).astimezone(UTC)

    at(8, 11)
    await post(http, f"/cases/{number}/reply", {"text": "Miramos", "agent": "ana"}, status=202)
    at(8, 11, 30)
    await write(service, 2, text="¿Y?", thread=ThreadHints(case_number=number), subject=f"Re: [#{number}]")
    at(8, 13)  # next response was due 12:30: the sweep records it
    assert (await notifier.sweep(timedelta(minutes=15)))[1] == 1
    assert (await notifier.sweep(timedelta(minutes=15)))[1] == 0  # once per due time
    at(8, 13, 10)
    await post(http, f"/cases/{number}/reply", {"text": "Ya va", "agent": "ana"}, status=202)  # no second entry
    at(8, 14)
    await write(service, 3, text="¿Y ahora?", thread=ThreadHints(case_number=number), subject=f"Re: [#{number}]")
    at(8, 15, 30)  # due 15:00: the late reply records it, before any sweep
    await post(http, f"/cases/{number}/reply", {"text": "Listo", "agent": "ana"}, status=202)
    case = await get(http, f"/cases/{number}")
    assert case["sla_breached"] == {"target": "first_response", "at": ba(8, 10, 30)}
    assert case["sla_breaches"] == [{"target": "first_response", "at": ba(8, 10, 30)},
                                    {"target": "next_response", "at": ba(8, 12, 30)},
                                    {"target": "next_response", "at": ba(8, 15)}]
    at(10, 9)  # resolution was due Wednesday 17:30: shown before any sweep, recorded by one
    running_past = (await get(http, f"/cases/{number}"))["sla_breaches"]
    assert running_past[-1] == {"target": "resolution", "at": ba(9, 17, 30)}
    assert (await notifier.sweep(timedelta(minutes=15)))[1] == 1
    await post(http, f"/cases/{number}", {"type": "request", "agent": "ana"}, method="PATCH")
    await post(http, f"/cases/{number}/activity", {"activity": "closed", "agent": "ana"})  # late close: no duplicate
    case = await get(http, f"/cases/{number}")
    assert case["sla_breaches"] == running_past and len(running_past) == 4
    assert case["sla_breached"] == {"target": "first_response", "at": ba(8, 10, 30)}
    listed = (await get(http, "/cases?limit=5"))["cases"]
    assert [c["sla_breaches"] for c in listed if c["number"] == number] == [running_past]


async def test_the_acknowledgement_out_of_hours_is_in_the_customers_time_zone(running):
    """The contact's ``timezone`` attribute, or the web chat browser's (the message's
    meta), wins over the calendar's; a zone nobody knows falls back to the calendar's."""
    service, http, clock = running
    clock.advance(hours=1)  # Friday 18:30 in Buenos Aires: the team opens Tuesday 09:00 there (12:00 UTC)
    await post(http, "/contacts", {"name": "Kenji", "attributes": {"timezone": "Asia/Tokyo"},
                                   "identities": [{"kind": "email", "address": "kenji@cliente.example"}]}, status=201)
    await post(http, "/contacts", {"name": "Zed", "attributes": {"timezone": "Mars/Olympus_Mons"},
                                   "identities": [{"kind": "email", "address": "zed@cliente.example"}]}, status=201)

    async def ack_of(message: InboundMessage) -> str:
        number = (await service.inbox.receive(message)).case_number
        async with service.db.engine.connect() as conn:
            return (await conn.execute(select(outbox.c.payload).where(
                outbox.c.case_id == number, outbox.c.kind == "ack"))).scalar_one()["text"]

    tokyo = await ack_of(InboundMessage(channel=ChannelName.EMAIL, external_id="<k1@cliente.example>",
                                        sender="kenji@cliente.example", text="Hola", subject="Hola", language="en"))
    assert "we open Tuesday 8 at 21:00 (Asia/Tokyo)" in tokyo
    unknown = await ack_of(InboundMessage(channel=ChannelName.EMAIL, external_id="<z1@cliente.example>",
                                          sender="zed@cliente.example", text="Hola", subject="Hola", language="es"))
    assert "abrimos el martes 8 a las 09:00 (America/Argentina/Buenos_Aires)" in unknown
    # The web chat widget says the browser's zone in its hello.
    async with aiohttp.ClientSession() as plain:
        chat = await ChatClient.connect(plain, f"http://127.0.0.1:{service.http.bound_port}",
                                        headers={"Origin": f"http://127.0.0.1:{service.http.bound_port}"})
        assert (await chat.hello(lang="pt", tz="Europe/Lisbon"))["type"] == "welcome"
        assert (await chat.say("c-1", "Olá"))["type"] == "ack"
        bot = await chat.next(lambda f: f.get("from") == "bot")
        assert "abrimos terça-feira, dia 8, às 12:00 (Europe/Lisbon)" in bot["text"]
        await chat.ws.close()


async def test_warnings_tell_the_due_time_in_the_calendar_zone_in_effect(database_url, tmp_path):
    """The notice calendar's time zone is read at each warning: an admin's edit while
    running changes it (it was read once, at start)."""
    clock = FakeClock(datetime(2026, 12, 8, 12, 0, tzinfo=UTC))
    config = make_config(database_url, tmp_path, assignment={"enabled": True},
                         sla={"first_response_minutes": 60, "warn_before_minutes": 15})
    always = {d: ("00:00-24:00",) for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone="UTC", **always),))
    service = Service(config, clock=clock)
    async with service:
        user = await service.console.users.create("lucia", "correct horse battery staple", role="agent")
        await service.assigner.update_agent(user.id, available=True, telegram_user_id=4242)
        assigned: asyncio.Queue[int] = asyncio.Queue()

        async def on_assigned(done) -> None:
            assigned.put_nowait(done.case_id)

        service.assigner.subscribe(on_assigned)

        async def warning_after(n: int) -> str:
            number = (await service.inbox.receive(InboundMessage(
                channel=ChannelName.EMAIL, external_id=f"<z{n}@cliente.example>", sender=f"z{n}@cliente.example",
                text="Hola", subject=f"Consulta {n}"))).case_number
            assert await asyncio.wait_for(assigned.get(), 10) == number  # only an assigned case is warned of
            clock.advance(minutes=50)  # due in 10 minutes: within the 15 of the warning
            assert (await service.agent_notifier.sweep(timedelta(minutes=15)))[0] == 1
            async with service.db.engine.connect() as conn:
                payload = (await conn.execute(select(outbox.c.payload).where(
                    outbox.c.case_id == number, outbox.c.kind == "agent_notice")
                    .order_by(outbox.c.id.desc()).limit(1))).scalar_one()
            assert payload["extra"]["event"] == "sla_warning"
            return payload["text"]

        assert "vence a las 13:00 08/12" in await warning_after(1)  # UTC
        await service.calendar_editor.save("default", {"timezone": "Europe/Madrid", **{
            d: list(v) for d, v in always.items()}}, actor="admin")
        clock.current = datetime(2026, 12, 8, 15, 0, tzinfo=UTC)
        assert "vence a las 17:00 08/12" in await warning_after(2)  # 16:00 UTC in Madrid
