"""Closing the loop: a detractor answer opens one complaint case per survey, the customer
hears that someone will contact them, and the panel follows the case until it closes.

Through a running Service on SQLite and PostgreSQL: the scheduler opens the survey, the
questions go out through the outbox, answers come back through the real inbox."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from posventa.core.domain import ChannelName, ChoiceAnswer
from posventa.core.errors import ValidationError
from posventa.core.persistence.schema import case_events, cases
from posventa.core.surveys import PanelFilter
from tests.core.surveys.conftest import sale
from tests.core.surveys.test_conversations import OPENS, World, _week

CONTACT_ES = "alguien de nuestro equipo se va a contactar contigo"


@pytest.fixture
async def world(database_url, tmp_path):
    from tests.core.surveys.conftest import CATALOG

    w = World(database_url, tmp_path)
    await w.start()
    await w.service.surveys.catalog.import_toml(CATALOG)
    yield w
    await w.stop()


async def _survey_cases(world, instance_id: int) -> list:
    async with world.service.db.engine.connect() as conn:
        return (await conn.execute(select(cases).where(cases.c.survey_instance_id == instance_id))).all()


async def test_an_email_detractor_opens_one_case_the_customer_hears_back_and_the_panel_follows_it(world):
    service = world.service
    await service.surveys.sales.record_many([sale("D-1", email="ana@cliente.com", name="Ana Pérez")])
    await world.tick(OPENS)
    [q1] = await world.next(ChannelName.EMAIL)

    # "1" on the 1-5 question weighs -100: at or below -50, a detractor answer.
    first = await world.say(ChannelName.EMAIL, "ana@cliente.com", "1", references=(q1.email.message_id,))
    number = first.case_number
    assert number is not None and not first.new_case
    instance = _week(await world.instance())
    case = await service.cases.get_case(number)
    assert case["type"] == "complaint" and case["origin"] == "survey" and case["activity"] == "preliminary_analysis"
    assert case["survey_instance_id"] == instance.id
    assert case["survey"]["sale"]["external_id"] == "D-1" and case["survey"]["rule"]["name"] == "week"
    assert "week" in case["title"] and "D-1" in case["title"]
    assert case["category"]["name"] == "Post-sale" and case["subcategory"]["name"] == "Survey"
    assert case["assigned_agent"] == "ana"  # the first of the rule's operators (ana, beto)
    assert case["contact"]["email"] == "ana@cliente.com" and case["contact"]["name"] == "Ana Pérez"
    assert case["channel"] == "email" and case["language"] == "es"
    assert "1. [attention] Atencion? → 1 (weight -100) ⚠ detractor" in case["description"]
    # The answer itself is in the case's thread: an agent's reply goes back by email.
    assert [m["text"] for m in case["messages"] if m["direction"] == "in"] == ["1"]

    # The instance points at its case.
    assert (await service.surveys.runner.instance(instance.id))["case"] == {
        "number": number, "activity": "preliminary_analysis", "closed_at": None}

    # A second detractor answer in the same survey joins that case: no second case.
    [q2] = await world.next(ChannelName.EMAIL)
    second = await world.say(ChannelName.EMAIL, "ana@cliente.com", "1", references=(q2.email.message_id,))
    assert second.case_number == number
    case = await service.cases.get_case(number)
    assert "2. [recommend] Recomendarias? → 1 (weight -100) ⚠ detractor" in case["description"]
    assert [h["kind"] for h in case["history"]].count("detractor_answer") == 1

    # A retried delivery of the same message is a duplicate, not a third answer.
    dup = await service.inbox.receive(_same_message(world, "1", q2.email.message_id))
    assert dup.duplicate and dup.case_number == number

    # The last answer is fine (yes = +100); the survey ends with "someone will contact you".
    [q3] = await world.next(ChannelName.EMAIL)
    await world.say(ChannelName.EMAIL, "ana@cliente.com", "sí", references=(q3.email.message_id,))
    [closing] = await world.next(ChannelName.EMAIL)
    assert CONTACT_ES in closing.text and closing.case_number == number
    assert len(await _survey_cases(world, instance.id)) == 1
    week = _week(await world.instance())
    assert week.status == "executed" and week.total_score == -100 - 100 + 100  # the score is untouched

    # The panel's detractors view lists it, open; the seller has one detractor, none closed.
    f = PanelFilter()
    view = await service.surveys.panel.detractors(f)
    assert view["counts"] == {"open": 1, "answered": 0, "closed": 0}
    [item] = view["items"]
    assert (item["case_number"], item["state"], item["sale"], item["seller"]) == (number, "open", "D-1", "marta")
    assert item["first_response_at"] is None
    [marta] = await service.surveys.panel.seller_scores(f)
    assert (marta["detractors"], marta["detractors_closed"]) == (1, 0)

    # An agent replies an hour later: answered, with the time to first response.
    world.clock.advance(hours=1)
    await service.cases.reply(number, "Hola Ana, te llamamos hoy.", agent="ana")
    [item] = (await service.surveys.panel.detractors(f))["items"]
    assert (item["state"], item["first_response_seconds"]) == ("answered", 3600)
    # The agent closes the case: the view shows it closed, and so do the seller's scores.
    await service.cases.change_activity(number, "closed", agent="ana")
    view = await service.surveys.panel.detractors(f)
    assert view["counts"] == {"open": 0, "answered": 0, "closed": 1}
    assert view["items"][0]["state"] == "closed" and view["items"][0]["case_closed_at"] is not None
    assert (await service.surveys.panel.detractors(f, state="open"))["items"] == []
    [marta] = await service.surveys.panel.seller_scores(f)
    assert (marta["detractors"], marta["detractors_closed"]) == (1, 1)
    csv_text = "".join([c async for c in service.surveys.panel.export_detractors_csv(f)])
    header, row = csv_text.strip().split("\r\n")
    assert header.startswith("id,status,rule,sale,seller") and f",{number}," in row and ",closed," in row
    assert "detractors,detractors_closed" in service.surveys.panel.seller_scores_csv([marta]).splitlines()[0]


def _same_message(world, text: str, reference: str):
    from posventa.core.domain import InboundMessage, ThreadHints

    return InboundMessage(channel=ChannelName.EMAIL, external_id=f"in-{world._n}", sender="ana@cliente.com",
                          text=text, thread=ThreadHints(references=(reference,)))


async def test_good_answers_open_nothing_and_end_with_thanks(world):
    await world.service.surveys.sales.record_many([sale("G-1", telegram_id="5001")])
    await world.tick(OPENS)
    [q1] = await world.next(ChannelName.TELEGRAM)
    # -50 on the 1-5 question is exactly the default threshold: a detractor; 3 (0) is not.
    for text in ("3", "8", "sí"):
        r = await world.say(ChannelName.TELEGRAM, "5001", text)
        assert r.case_number is None
    sent = await world.next(ChannelName.TELEGRAM, 3)
    assert "Gracias" in sent[-1].text and CONTACT_ES not in sent[-1].text
    assert await _survey_cases(world, _week(await world.instance()).id) == []


async def test_question_thresholds_of_its_own_or_off(world):
    catalog = world.service.surveys.catalog
    questions = {q["code"]: q for q in await catalog.list_questions()}
    assert questions["attention"]["detractor_threshold"] is None  # the config default (-50)
    await catalog.update_question(questions["attention"]["id"], {"detractor_threshold": "off"})
    await catalog.update_question(questions["recommend"]["id"], {"detractor_threshold": -80})
    with pytest.raises(ValidationError) as bad:
        await catalog.update_question(questions["working"]["id"], {"detractor_threshold": -101})
    assert bad.value.field == "detractor_threshold"
    with pytest.raises(ValidationError):
        await catalog.update_question(questions["working"]["id"], {"detractor_threshold": True})
    assert (await catalog.get_question(questions["attention"]["id"]))["detractor_threshold"] == "off"

    await world.service.surveys.sales.record_many([sale("T-1", telegram_id="5002")])
    await world.tick(OPENS)
    await world.next(ChannelName.TELEGRAM)
    assert (await world.say(ChannelName.TELEGRAM, "5002", "1")).case_number is None  # off
    await world.next(ChannelName.TELEGRAM)
    assert (await world.say(ChannelName.TELEGRAM, "5002", "5")).case_number is None  # -40 > -80
    await world.next(ChannelName.TELEGRAM)
    r = await world.say(ChannelName.TELEGRAM, "5002", "no")  # -100 <= the default -50
    assert r.case_number is not None
    [closing] = await world.next(ChannelName.TELEGRAM)
    assert CONTACT_ES in closing.text


async def test_an_operator_and_the_customer_answering_the_same_survey_share_one_case(world):
    service = world.service
    await service.surveys.sales.record_many([sale("O-1", telegram_id="5003")])
    await world.tick(OPENS)
    [q1] = await world.next(ChannelName.TELEGRAM)
    instance = _week(await world.instance())
    # The customer presses "1" (a detractor); an operator on the phone records another one.
    r = await world.say(ChannelName.TELEGRAM, "5003", "1", choice=ChoiceAnswer(q1.question, "1"))
    await world.next(ChannelName.TELEGRAM)
    done = await service.surveys.runner.record_answers(
        instance.id, [{"question": "recommend", "score": 0}], operator="beto")
    assert done["case"]["number"] == r.case_number
    case = await service.cases.get_case(r.case_number)
    assert "recommend" in case["description"]
    assert any(h["kind"] == "detractor_answer" and h["actor"] == "operator:beto" for h in case["history"])
    assert len(await _survey_cases(world, instance.id)) == 1


async def test_the_database_refuses_a_second_case_for_one_survey(world):
    """The backstop under every code path: cases.survey_instance_id is unique."""
    from sqlalchemy.exc import IntegrityError

    await world.service.surveys.sales.record_many([sale("U-1", telegram_id="5004")])
    await world.tick(OPENS)
    await world.next(ChannelName.TELEGRAM)
    await world.say(ChannelName.TELEGRAM, "5004", "1")
    instance = _week(await world.instance())
    [existing] = await _survey_cases(world, instance.id)
    row = {k: v for k, v in existing._mapping.items() if k != "id"} | {"reply_token": "another-token"}
    with pytest.raises(IntegrityError):
        async with world.service.db.transaction() as conn:
            await conn.execute(insert(cases).values(**row))
    async with world.service.db.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(cases)
                                   .where(cases.c.survey_instance_id == instance.id))).scalar_one() == 1
        assert (await conn.execute(select(func.count()).select_from(case_events)
                                   .where(case_events.c.case_id == existing.id,
                                          case_events.c.kind == "opened"))).scalar_one() == 1


async def test_resurvey_after_close_asks_once_and_keeps_the_score(world):
    service = world.service
    catalog = service.surveys.catalog
    rules = {r["name"]: r for r in await catalog.list_rules()}
    await catalog.update_rule(rules["week"]["id"], {"resurvey_after_close": True})
    await service.surveys.sales.record_many([sale("F-1", telegram_id="5005"), sale("F-2", telegram_id="5006",
                                                                                   product="LIC")])
    await world.tick(OPENS)
    await world.next(ChannelName.TELEGRAM)
    for text in ("1", "9", "sí"):
        r = await world.say(ChannelName.TELEGRAM, "5005", text)
    number = r.case_number
    await world.next(ChannelName.TELEGRAM, 3)
    instance = _week(await world.instance())
    assert instance.total_score == -100 + 80 + 100

    # An agent closes the case: one question, on the survey's channel, recorded on the case.
    await service.cases.change_activity(number, "closed", agent="ana")
    [asked] = await world.next(ChannelName.TELEGRAM)
    assert "¿Se resolvió tu problema?" in asked.text and [c.value for c in asked.choices] == ["yes", "no"]
    assert asked.case_number == number and asked.question == f"survey:{instance.id}:0"
    got = await service.surveys.runner.instance(instance.id)
    assert got["followup"]["status"] == "asked" and got["case"]["activity"] == "closed"

    r = await world.say(ChannelName.TELEGRAM, "5005", "Sí", choice=ChoiceAnswer(asked.question, "yes"))
    assert r.case_number == number  # filed under the (closed) case, no new case
    [thanks] = await world.next(ChannelName.TELEGRAM)
    assert "Gracias por contarnos" in thanks.text
    got = await service.surveys.runner.instance(instance.id)
    assert (got["followup"]["status"], got["followup"]["score"], got["followup"]["weight"]) == ("answered", "yes", 100)
    assert got["total_score"] == instance.total_score  # commission's score is never rewritten
    [item] = (await service.surveys.panel.detractors(PanelFilter()))["items"]
    assert item["followup"] == {"score": "yes", "weight": 100}
    # Asked once: a second press, or a later "no", opens nothing and changes nothing.
    again = await world.say(ChannelName.TELEGRAM, "5005", "no", choice=ChoiceAnswer(asked.question, "no"))
    assert again.case_number is None
    assert (await service.surveys.runner.instance(instance.id))["followup"]["score"] == "yes"


async def test_no_resurvey_without_the_rule_flag(world):
    service = world.service
    await service.surveys.sales.record_many([sale("N-1", telegram_id="5007")])
    await world.tick(OPENS)
    await world.next(ChannelName.TELEGRAM)
    for text in ("1", "8", "sí"):
        r = await world.say(ChannelName.TELEGRAM, "5007", text)
    await world.next(ChannelName.TELEGRAM, 3)
    await service.cases.change_activity(r.case_number, "closed", agent="ana")
    assert (await service.surveys.runner.instance(_week(await world.instance()).id))["followup"] is None
    # The customer's next message is an ordinary one, not a re-survey answer: within
    # [cases] reopen_days of the close it reopens the case (issue 19's follow-up rule).
    later = await world.say(ChannelName.TELEGRAM, "5007", "no")
    assert later.case_number == r.case_number
    assert (await service.cases.get_case(r.case_number))["activity"] == "preliminary_analysis"


async def test_with_automatic_assignment_the_case_goes_to_an_available_operator_of_the_rule(database_url, tmp_path):
    """The rule's operators are ana and beto; only beto is available: beto gets it. (The
    first operator is the fallback when nobody of the rule is free.)"""
    import dataclasses

    from posventa.core.config import CalendarConfig
    from tests.core.surveys.conftest import CATALOG

    always = {d: ("00:00-24:00",) for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    w = World(database_url, tmp_path)
    w.config = dataclasses.replace(
        w.config, assignment=dataclasses.replace(w.config.assignment, enabled=True),
        calendars=(CalendarConfig(name="default", timezone="UTC", **always),))
    await w.start()
    try:
        await w.service.surveys.catalog.import_toml(CATALOG)
        for name in ("ana", "beto"):
            user = await w.service.console.users.create(name, "correct horse battery staple", role="agent")
            if name == "beto":
                await w.service.assigner.update_agent(user.id, available=True)
        await w.service.surveys.sales.record_many([sale("A-1", telegram_id="5010"), sale("A-2", telegram_id="5011")])
        await w.tick(OPENS)
        await w.next(ChannelName.TELEGRAM, 2)
        first = await w.say(ChannelName.TELEGRAM, "5010", "1")
        assert (await w.service.cases.get_case(first.case_number))["assigned_agent"] == "beto"
        # beto stops being available: the next detractor case falls back to the first operator.
        beto = next(u for u in await w.service.assigner.list_agents() if u["username"] == "beto")
        await w.service.assigner.update_agent(beto["id"], available=False)
        second = await w.say(ChannelName.TELEGRAM, "5011", "1")
        assert (await w.service.cases.get_case(second.case_number))["assigned_agent"] == "ana"
    finally:
        await w.stop()
