"""core.case_threading: the one rule for which case a message joins, and the inbox's
``open_case_of`` that every chat channel asks instead of querying cases itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from posventa.core.case_threading import CaseRef, JoinableCases, OpenNew, choose_case
from posventa.core.domain import Activity, ChannelName, ChoiceAnswer, InboundMessage, ThreadHints
from posventa.core.inbox import InboxService
from posventa.core.outgoing import Outgoing
from posventa.core.persistence.schema import cases
from tests.support import FakeClock

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def chat(text: str = "hola", *, external_id: str = "1:1", **kw) -> InboundMessage:
    return InboundMessage(channel=ChannelName.TELEGRAM, external_id=external_id, sender="1", text=text, **kw)


def closed(case_id: int, days_ago: float) -> CaseRef:
    return CaseRef(id=case_id, activity=Activity.CLOSED.value, closed_at=NOW - timedelta(days=days_ago))


def test_a_chat_message_joins_the_open_case_and_an_email_opens_one():
    hints = JoinableCases(open_case={7: CaseRef(id=3)})
    assert choose_case(chat(), 7, hints, now=NOW, reopen_days=7).id == 3
    email = InboundMessage(channel=ChannelName.EMAIL, external_id="<a@b>", sender="a@b", text="hi")
    assert choose_case(email, 7, hints, now=NOW, reopen_days=7) == OpenNew()
    assert choose_case(chat(new_case=True), 7, hints, now=NOW, reopen_days=7) == OpenNew()


def test_a_closed_case_is_reopened_within_the_window_and_followed_up_after_it():
    recent = JoinableCases(by_token={"tok": closed(5, 2)})
    joined = choose_case(chat(thread=ThreadHints(reply_token="tok")), 7, recent, now=NOW, reopen_days=7)
    assert joined.id == 5 and joined.activity == Activity.PRELIMINARY_ANALYSIS.value and 5 in recent.reopened
    old = JoinableCases(by_token={"tok": closed(5, 30)})
    assert choose_case(chat(thread=ThreadHints(reply_token="tok")), 7, old, now=NOW, reopen_days=7) \
        == OpenNew(follow_up_of=5)


def test_a_button_answer_joins_a_closed_case_without_reopening_it():
    hints = JoinableCases(by_token={"tok": closed(5, 2)})
    m = chat(thread=ThreadHints(reply_token="tok"), choice=ChoiceAnswer("kb_feedback:5", "yes"))
    assert choose_case(m, 7, hints, now=NOW, reopen_days=7).id == 5 and not hints.reopened


def test_a_subject_tag_counts_only_for_the_cases_own_contact():
    hints = JoinableCases(by_number={5: (8, CaseRef(id=5))})
    m = InboundMessage(channel=ChannelName.EMAIL, external_id="<a@b>", sender="a@b", text="hi",
                       thread=ThreadHints(case_number=5))
    assert choose_case(m, 8, hints, now=NOW, reopen_days=7).id == 5
    assert choose_case(m, 9, hints, now=NOW, reopen_days=7) == OpenNew()


async def test_open_case_of_is_the_case_the_next_chat_message_joins(db):
    inbox = InboxService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=5), clock=FakeClock())
    async with inbox:
        first = await inbox.receive(chat(external_id="1:1"))
        contact_id = await _contact_of(db, first.case_number)
        assert await inbox.open_case_of(contact_id) == first.case_number
        async with db.transaction() as conn:
            await conn.execute(update(cases).where(cases.c.id == first.case_number)
                               .values(activity=Activity.CLOSED.value, closed_at=NOW - timedelta(days=400)))
        assert await inbox.open_case_of(contact_id) is None
        second = await inbox.receive(chat("otra cosa", external_id="1:2"))
        assert second.new_case and await inbox.open_case_of(contact_id) == second.case_number


async def _contact_of(db, case_id: int) -> int:
    async with db.engine.connect() as conn:
        return (await conn.execute(select(cases.c.contact_id).where(cases.c.id == case_id))).scalar_one()
