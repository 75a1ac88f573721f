"""A customer writing after the case closed: reopen within ``[cases] reopen_days``,
a linked follow-up after that; on every channel, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from posventa.core.cases import CaseService
from posventa.core.domain import ChannelName, ChoiceAnswer, InboundMessage, ThreadHints
from posventa.core.inbox import HookContext, InboxService
from posventa.core.outgoing import Outgoing
from posventa.core.persistence.schema import case_events, cases, outbox
from tests.support import FakeClock


class OwnsEverything:
    """A conversation hook (like a running survey) that consumes every message."""

    async def active_contacts(self, conn, contact_ids):
        return set(contact_ids)

    async def handle(self, ctx: HookContext) -> bool:
        return True


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def desk(db, clock):
    outgoing = Outgoing(email_domain="example.com", max_attempts=5)
    inbox = InboxService(db=db, outgoing=outgoing, clock=clock, reopen_days=7)
    cases_ = CaseService(db=db, outgoing=outgoing, clock=clock)
    async with inbox:
        yield inbox, cases_


def mail(msgid: str, *, references: tuple[str, ...] = (), token: str | None = None, text: str = "Sigue sin andar"):
    return InboundMessage(channel=ChannelName.EMAIL, external_id=msgid, sender="ana@cliente.example", text=text,
                          subject="Re: Pedido", thread=ThreadHints(reply_token=token, references=references))


async def _closed_case(inbox, cases_, clock, *, assignee: str = "maria") -> int:
    first = await inbox.receive(mail("<m1@cliente.example>", text="Mi pedido no llegó"))
    await cases_.set_type(first.case_number, "request", agent="maria")  # closing needs a type
    await cases_.assign(first.case_number, assignee, agent="maria")
    await cases_.change_activity(first.case_number, "closed", agent="maria")
    return first.case_number


async def _case(db, number):
    async with db.engine.connect() as conn:
        return (await conn.execute(select(cases).where(cases.c.id == number))).one()


async def test_an_email_reply_to_a_case_closed_yesterday_reopens_it(db, desk, clock):
    inbox, cases_ = desk
    number = await _closed_case(inbox, cases_, clock)
    clock.advance(days=1)
    reply = await inbox.receive(mail("<m2@cliente.example>", references=("<m1@cliente.example>",)))
    assert reply.case_number == number and not reply.new_case
    case = await _case(db, number)
    assert case.activity == "preliminary_analysis" and case.closed_at is None and case.assigned_agent == "maria"
    async with db.engine.connect() as conn:
        [event] = (await conn.execute(select(case_events).where(case_events.c.case_id == number,
                                                                case_events.c.kind == "reopened"))).all()
        told = (await conn.execute(select(outbox.c.payload).where(outbox.c.kind == "bot"))).scalars().all()
    # Stored as a code (each reader gets it in their language), read in English by the API.
    assert event.actor == "customer" and (event.code, event.params, event.detail) == ("case_history_reopened",
                                                                                      None, None)
    assert any(f"#{number}" in p["text"] and "Reabrimos" in p["text"] for p in told)
    detail = await cases_.get_case(number)
    assert [h["detail"] for h in detail["history"] if h["kind"] == "reopened"] == ["reopened by the customer"]


async def test_a_reply_to_a_case_closed_ten_days_ago_opens_a_linked_follow_up(db, desk, clock):
    inbox, cases_ = desk
    number = await _closed_case(inbox, cases_, clock)
    token = (await _case(db, number)).reply_token
    clock.advance(days=10)
    late = await inbox.receive(mail("<m3@cliente.example>", token=token))
    assert late.new_case and late.case_number != number
    assert (await _case(db, late.case_number)).follow_up_of == number
    assert (await _case(db, number)).activity == "closed"
    # A second late reply to the old thread joins the follow-up, not a third case.
    again = await inbox.receive(mail("<m4@cliente.example>", references=("<m1@cliente.example>",)))
    assert again.case_number == late.case_number and not again.new_case
    old, new = await cases_.get_case(number), await cases_.get_case(late.case_number)
    assert old["follow_ups"] == [late.case_number] and new["follow_up_of"] == number
    # The follow-up's history says which case it follows.
    [opened] = [h for h in new["history"] if h["kind"] == "opened"]
    assert (opened["code"], opened["values"], opened["detail"]) == ("case_history_follow_up", {"case": number},
                                                                    f"follow-up of #{number}")


async def test_chat_messages_reopen_the_recently_closed_case_but_button_answers_do_not(db, desk, clock):
    inbox, cases_ = desk
    first = await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id="7:1", sender="7",
                                               text="hola"))
    await cases_.set_type(first.case_number, "request", agent="maria")
    await cases_.change_activity(first.case_number, "closed", agent="maria")
    clock.advance(hours=2)
    pressed = await inbox.receive(InboundMessage(
        channel=ChannelName.TELEGRAM, external_id="7:2", sender="7", text="Sí",
        choice=ChoiceAnswer(question=f"kb_feedback:{first.case_number}", value="yes")))
    assert (await _case(db, first.case_number)).activity == "closed" and pressed.case_number != first.case_number
    assert (await _case(db, pressed.case_number)).follow_up_of is None
    await cases_.set_type(pressed.case_number, "request", agent="maria")
    await cases_.change_activity(pressed.case_number, "closed", agent="maria")
    clock.advance(days=3)
    again = await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id="7:3", sender="7",
                                               text="otra vez no anda"))
    assert again.case_number == pressed.case_number and not again.new_case
    assert (await _case(db, pressed.case_number)).activity == "preliminary_analysis"
    await cases_.change_activity(pressed.case_number, "closed", agent="maria")
    clock.advance(days=8)
    fresh = await inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id="7:4", sender="7",
                                               text="consulta nueva"))
    assert fresh.new_case and (await _case(db, fresh.case_number)).follow_up_of is None


async def test_a_survey_answer_never_reopens_a_case(db, desk, clock):
    inbox, cases_ = desk
    number = await _closed_case(inbox, cases_, clock)
    clock.advance(days=1)
    inbox.add_hook(OwnsEverything())
    answer = await inbox.receive(mail("<m5@cliente.example>", references=("<m1@cliente.example>",), text="9"))
    assert answer.case_number is None
    assert (await _case(db, number)).activity == "closed"
