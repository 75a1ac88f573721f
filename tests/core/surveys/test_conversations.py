"""Whole surveys through a running Service: the scheduler opens the window, the first
question goes out through the outbox to the channel (RecordingChannel at our Channel
seam), the customer's answers come back through the real inbox, and the hook records
them. Telegram and web chat get buttons, email gets numbered choices and replies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from posventa.core.domain import ChannelName, ChoiceAnswer, InboundMessage, ThreadHints
from posventa.core.persistence.schema import rule_instances, survey_answers
from posventa.service import Service
from tests.core.surveys.conftest import CATALOG, START, sale
from tests.support import FakeClock, RecordingChannel, make_config

OPENS = datetime(2026, 3, 9, 3, 0, tzinfo=UTC)  # "week" for a sale closed on 2 March (Buenos Aires)
CLOSES = datetime(2026, 3, 12, 3, 0, tzinfo=UTC)
CHANNELS = (ChannelName.TELEGRAM, ChannelName.WEBCHAT, ChannelName.EMAIL)


class World:
    def __init__(self, database_url, tmp_path):
        self.clock = FakeClock(START)
        self.config = make_config(database_url, tmp_path, surveys={"enabled": True, "tick_seconds": 3600})
        self.channels = {name: RecordingChannel(name) for name in CHANNELS}
        self.service: Service | None = None
        self._n = 0

    async def start(self) -> Service:
        self.service = Service(self.config, clock=self.clock)
        self.service.channels.update(self.channels)
        await self.service.start()
        return self.service

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    async def tick(self, at: datetime | None = None):
        if at is not None:
            self.clock.current = at
        return await self.service.surveys.scheduler.tick()

    async def say(self, channel: ChannelName, sender: str, text: str, *, choice: ChoiceAnswer | None = None,
                  references: tuple[str, ...] = (), auto_reply_allowed: bool = True):
        self._n += 1
        return await self.service.inbox.receive(InboundMessage(
            channel=channel, external_id=f"in-{self._n}", sender=sender, text=text, choice=choice,
            thread=ThreadHints(references=references), auto_reply_allowed=auto_reply_allowed))

    async def next(self, channel: ChannelName, count: int = 1):
        rec = self.channels[channel]
        already = getattr(rec, "_taken", 0)
        sent = await rec.wait_for(already + count)
        rec._taken = already + count
        return sent[already:already + count]

    async def instance(self, sale_external_id: str | None = None):
        async with self.service.db.engine.connect() as conn:
            rows = (await conn.execute(select(rule_instances).order_by(rule_instances.c.id))).all()
        return rows

    async def answers(self, instance_id: int):
        async with self.service.db.engine.connect() as conn:
            return (await conn.execute(select(survey_answers.c.score, survey_answers.c.weight)
                                       .where(survey_answers.c.instance_id == instance_id)
                                       .order_by(survey_answers.c.id))).all()


@pytest.fixture
async def world(database_url, tmp_path):
    w = World(database_url, tmp_path)
    await w.start()
    await w.service.surveys.catalog.import_toml(CATALOG)
    yield w
    await w.stop()


def _week(rows):
    return next(r for r in rows if r.window_start == OPENS)


async def test_telegram_buttons_words_invalid_twice_and_a_restart(world):
    await world.service.surveys.sales.record_many([sale("T-1", telegram_id="1001", name="Ana Pérez")])
    assert (await world.tick(OPENS - timedelta(seconds=1))).opened == 0
    report = await world.tick(OPENS)
    assert report.opened == 1 and report.by_channel == {"telegram": 1}
    [first] = await world.next(ChannelName.TELEGRAM)
    assert first.recipient == "1001" and first.kind == "survey"
    assert "Ana" in first.text and "Impresora" in first.text and "(1/3) Atencion?" in first.text
    assert [c.value for c in first.choices] == ["1", "2", "3", "4", "5"]
    assert first.question.startswith("survey:")

    # A button press answers question 1.
    r = await world.say(ChannelName.TELEGRAM, "1001", "4", choice=ChoiceAnswer(first.question, "4"))
    assert r.case_number is None  # consumed by the survey: no case
    [second] = await world.next(ChannelName.TELEGRAM)
    assert "(2/3) Recomendarias?" in second.text and len(second.choices) == 11

    # The service restarts between two answers: progress is in the database.
    await world.stop()
    await world.start()
    r = await world.say(ChannelName.TELEGRAM, "1001", "le doy un diez")
    assert r.case_number is None
    [third] = await world.next(ChannelName.TELEGRAM)
    assert "(3/3) Funciona?" in third.text and [c.value for c in third.choices] == ["yes", "no"]

    # Two unreadable answers are asked again, kindly; the third try answers.
    for text in ("hmm", "qué?"):
        assert (await world.say(ChannelName.TELEGRAM, "1001", text)).case_number is None
        [retry] = await world.next(ChannelName.TELEGRAM)
        assert retry.text.startswith("Perdón, no entendí tu respuesta. Responde sí o no.")
        assert retry.question == third.question
    assert (await world.say(ChannelName.TELEGRAM, "1001", "sí")).case_number is None
    [thanks] = await world.next(ChannelName.TELEGRAM)
    assert "Gracias" in thanks.text and not thanks.choices

    week = _week(await world.instance())
    assert week.status == "executed" and week.executed_by == "customer"
    assert [(a.score, a.weight) for a in await world.answers(week.id)] == [("4", 50), ("10", 100), ("yes", 100)]
    assert week.total_score == 250 and week.normalized_score == pytest.approx(250 / 3)

    # A late press of an old button gets a polite "closed", not a case.
    r = await world.say(ChannelName.TELEGRAM, "1001", "5", choice=ChoiceAnswer(first.question, "5"))
    assert r.case_number is None
    [closed] = await world.next(ChannelName.TELEGRAM)
    assert "cerrada" in closed.text


async def test_webchat_and_a_third_bad_answer_hands_over_to_a_case(world):
    # The visitor wrote in the web chat first (that made the contact and its session identity).
    hello = await world.say(ChannelName.WEBCHAT, "wc-visitor1", "hola, compré una impresora")
    await world.next(ChannelName.WEBCHAT)  # the new-case ack
    await world.service.surveys.sales.record_many([sale("W-1", webchat_session="wc-visitor1",
                                                        email="vis@example.com", language="en")])
    report = await world.tick(OPENS)
    assert report.by_channel == {"webchat": 1}  # web chat is preferred over email
    [q1] = await world.next(ChannelName.WEBCHAT)
    assert "Hi! Could you help us" in q1.text and "(1/3) Service?" in q1.text and q1.language == "en"
    assert (await world.say(ChannelName.WEBCHAT, "wc-visitor1", "five stars")).case_number is None
    [q2] = await world.next(ChannelName.WEBCHAT)
    assert "(2/3)" in q2.text
    for text in ("banana", "more bananas"):
        assert (await world.say(ChannelName.WEBCHAT, "wc-visitor1", text)).case_number is None
        [retry] = await world.next(ChannelName.WEBCHAT)
        assert retry.text.startswith("Sorry, I didn't get that. Reply with a number from 0 to 10.")
    # The third unreadable message is probably not an answer at all: a person reads it.
    r = await world.say(ChannelName.WEBCHAT, "wc-visitor1", "where is my invoice?")
    assert r.case_number == hello.case_number  # threads into the visitor's open case
    [bye] = await world.next(ChannelName.WEBCHAT)
    assert "an agent will read your message" in bye.text
    assert _week(await world.instance()).status == "paused"
    # From now on the chat is the case's.
    assert (await world.say(ChannelName.WEBCHAT, "wc-visitor1", "hello?")).case_number == hello.case_number


async def test_email_numbered_replies_and_unrelated_mail(world):
    await world.service.surveys.sales.record_many([sale("E-1", email="ana@cliente.com")])
    await world.tick(OPENS)
    [q1] = await world.next(ChannelName.EMAIL)
    assert q1.recipient == "ana@cliente.com" and q1.email is not None
    # On 1-5, option n of the email's numbered list is score n: the list is shown.
    assert [c.label for c in q1.choices] == ["1", "2", "3", "4", "5"]
    assert q1.extra["subject"] == "Encuesta: Impresora"
    # An unrelated mail (no reply headers, not an answer) opens a case; the survey waits.
    other = await world.say(ChannelName.EMAIL, "ana@cliente.com", "Necesito la factura de marzo")
    assert other.case_number is not None
    await world.next(ChannelName.EMAIL)  # the case ack
    # An out-of-office reply (the email adapter's loop guard fired) is never answered.
    ooo = await world.say(ChannelName.EMAIL, "ana@cliente.com", "Estoy fuera de la oficina hasta el 20",
                          references=(q1.email.message_id,), auto_reply_allowed=False)
    assert ooo.case_number is not None
    assert _week(await world.instance()).invalid_answers == 0
    # The reply to the survey mail, quoted history already stripped by the email adapter.
    r = await world.say(ChannelName.EMAIL, "ana@cliente.com", "tres", references=(q1.email.message_id,))
    assert r.case_number is None
    [q2] = await world.next(ChannelName.EMAIL)
    assert "(2/3)" in q2.text and q2.email.in_reply_to == f"in-{world._n}"
    # On 0-10, option 1 would be score 0: no numbered list, ask for the score itself.
    assert q2.choices == () and "Responde con un número del 0 al 10. Puedes responder a este correo." in q2.text
    # A bare "8" without headers still reads as an answer.
    assert (await world.say(ChannelName.EMAIL, "ana@cliente.com", "8")).case_number is None
    [q3] = await world.next(ChannelName.EMAIL)
    assert "Responde sí o no." in q3.text and q3.choices == ()
    # "No" weighs -100: a detractor answer, filed under the survey's new complaint case.
    detractor = await world.say(ChannelName.EMAIL, "ana@cliente.com", "No", references=(q3.email.message_id,))
    assert detractor.case_number is not None and detractor.case_number != other.case_number
    [closing] = await world.next(ChannelName.EMAIL)
    assert "alguien de nuestro equipo se va a contactar contigo" in closing.text
    week = _week(await world.instance())
    assert week.status == "executed" and week.total_score == 0 + 0 - 100


async def test_asking_for_an_agent_or_complaining_pauses_and_opens_a_case(world):
    await world.service.surveys.sales.record_many([
        sale("X-1", telegram_id="2001"), sale("X-2", telegram_id="2002")])
    await world.tick(OPENS)
    await world.next(ChannelName.TELEGRAM, 2)
    r = await world.say(ChannelName.TELEGRAM, "2001", "quiero hablar con un agente")
    assert r.case_number is not None and r.new_case
    r2 = await world.say(ChannelName.TELEGRAM, "2002", "2, el equipo llegó roto y quiero un reembolso")
    # "2" weighs -50, a detractor answer: the survey's complaint case holds the message.
    assert r2.case_number is not None and not r2.new_case
    sent = await world.next(ChannelName.TELEGRAM, 3)  # "paused" to both, the new case's ack to 2001
    assert sum("Un agente te va a atender" in m.text for m in sent) == 2
    rows = {r.contact_id: r for r in await world.instance() if r.window_start == OPENS}
    assert {r.status for r in rows.values()} == {"paused"}
    # The complaint's score still counts; the agent request had none.
    answers = {cid: await world.answers(row.id) for cid, row in rows.items()}
    assert sorted(len(a) for a in answers.values()) == [0, 1]
    # Paused surveys are not reopened by the scheduler, nor reminded.
    report = await world.tick(OPENS + timedelta(days=2))
    assert (report.opened, report.reminded) == (0, 0)


async def test_reminded_once_then_left_then_expired(world):
    await world.service.surveys.sales.record_many([sale("R-1", telegram_id="3001")])
    await world.tick(OPENS)
    [q1] = await world.next(ChannelName.TELEGRAM)
    assert (await world.tick(OPENS + timedelta(hours=23, minutes=59))).reminded == 0
    assert (await world.tick(OPENS + timedelta(hours=24))).reminded == 1
    [reminder] = await world.next(ChannelName.TELEGRAM)
    assert reminder.text.startswith("Te recordamos") and reminder.question == q1.question
    assert (await world.tick(OPENS + timedelta(hours=60))).reminded == 0  # once only
    report = await world.tick(CLOSES)
    assert report.expired == 1
    assert _week(await world.instance()).status == "expired"
    # Answers after expiry get "closed", and never open a case.
    r = await world.say(ChannelName.TELEGRAM, "3001", "5", choice=ChoiceAnswer(q1.question, "5"))
    assert r.case_number is None
    assert "cerrada" in (await world.next(ChannelName.TELEGRAM))[0].text
    assert len(world.channels[ChannelName.TELEGRAM].sent) == 3


async def test_one_survey_at_a_time_per_customer(world):
    # Two sales a day apart for the same customer: two windows open at once.
    await world.service.surveys.sales.record_many([
        sale("M-1", telegram_id="4001"), sale("M-2", closed_at="2026-03-03", telegram_id="4001")])
    assert (await world.tick(OPENS + timedelta(days=1))).opened == 1
    [q] = await world.next(ChannelName.TELEGRAM)
    assert (await world.tick()).opened == 0
    # Answer all three; the next tick opens the other sale's survey.
    await world.say(ChannelName.TELEGRAM, "4001", "5", choice=ChoiceAnswer(q.question, "5"))
    await world.say(ChannelName.TELEGRAM, "4001", "9")
    await world.say(ChannelName.TELEGRAM, "4001", "yes")
    await world.next(ChannelName.TELEGRAM, 3)
    assert (await world.tick()).opened == 1


async def test_the_same_answer_through_every_mail_clients_reply_is_recorded_with_its_weight(world):
    """The reply fixtures (Gmail, Outlook, Apple Mail, Thunderbird in es/pt/en) all answer
    "4" to a 1-5 question, above or below the quoted numbered list and a signature with
    digits: parsed by the email adapter and fed through the inbox, each records score 4
    with its weight (50), which it could not if any quoted choice or phone number leaked."""
    from posventa.intake.email.parse import parse_email
    from tests.intake.email.test_reply_fixtures import EXPECTED, REPLIES

    parsed = {name: parse_email((REPLIES / f"{name}.eml").read_bytes()) for name in sorted(EXPECTED)}
    # One customer per fixture, so each has a survey of its own.
    senders = {name: f"{name}@cliente.example" for name in parsed}
    await world.service.surveys.sales.record_many([sale(f"F-{name}", email=senders[name]) for name in parsed])
    await world.tick(OPENS)
    questions = {q.recipient: q for q in await world.next(ChannelName.EMAIL, len(parsed))}
    instances = {r.contact_id: r for r in await world.instance() if r.window_start == OPENS}
    for name, mail in parsed.items():
        q1 = questions[senders[name]]
        receipt = await world.say(ChannelName.EMAIL, senders[name], mail.text, references=(q1.email.message_id,))
        assert receipt.case_number is None, name  # a survey answer, not a new case
    for name in parsed:
        contact = await _contact_of(world, senders[name])
        answers = await world.answers(instances[contact].id)
        assert [tuple(a) for a in answers][:1] == [("4", 50)], name


async def _contact_of(world, address: str) -> int:
    from posventa.core.persistence.schema import contact_identities

    async with world.service.db.engine.connect() as conn:
        return (await conn.execute(select(contact_identities.c.contact_id)
                                   .where(contact_identities.c.address == address))).scalar_one()
