"""A Telegram survey closes the loop through the fake Bot API, on both databases: the
customer presses "1", a complaint case opens once (Telegram redelivering the update
changes nothing), a second bad answer joins it, the bot says someone will contact them,
and the panel's detractors view follows the case until an agent closes it."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from posventa.core.domain import ChannelName
from posventa.core.persistence.schema import cases
from posventa.core.surveys import PanelFilter
from posventa.service import Service
from tests.bots.conftest import eventually, rows, telegram_section
from tests.fakes.telegram_api import FakeTelegram
from tests.intake.webchat.test_survey_detractor_e2e import CATALOG
from tests.support import RecordingChannel, make_config

ANA = 4301


@pytest.fixture
async def service(database_url, tmp_path, tg: FakeTelegram):
    config = make_config(database_url, tmp_path, telegram=telegram_section(tg, agent_chat_id=0, agents=()),
                         surveys={"enabled": True, "tick_seconds": 3600})
    running = Service(config)
    running.channels[ChannelName.EMAIL] = RecordingChannel(ChannelName.EMAIL)
    await running.start()
    try:
        await running.surveys.catalog.import_toml(CATALOG)
        yield running
    finally:
        await running.stop()


def _keyboard(call) -> dict[str, str]:
    return {b["text"]: b["callback_data"] for row in call.params["reply_markup"]["inline_keyboard"] for b in row}


async def test_a_telegram_detractor_opens_one_case_and_the_panel_follows_it(service: Service, tg: FakeTelegram):
    today = datetime.now(service.surveys.tz).date().isoformat()
    _, errors = await service.surveys.sales.record_many([{
        "external_id": "TG-1", "product": "PRN", "seller": "marta", "closed_at": today,
        "customer": {"name": "Ana", "telegram_id": str(ANA), "language": "es"}}])
    assert errors == []
    await service.surveys.scheduler.tick()  # (serve's own ticker may open it first)

    first = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA
                                   and "Como te atendieron?" in c.params["text"])
    tg.callback(ANA, _keyboard(first)["1"])
    second = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA
                                    and "Funciona el equipo?" in c.params["text"])
    [opened] = await eventually(lambda: rows(service, select(cases.c.id, cases.c.case_type, cases.c.origin)
                                             .where(cases.c.survey_instance_id.isnot(None))))
    assert (opened.case_type, opened.origin) == ("complaint", "survey")

    pressed = tg.callback(ANA, _keyboard(second)["No"])
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA
                           and "alguien de nuestro equipo se va a contactar contigo" in c.params["text"])
    # Telegram delivers the same press again: nothing new happens.
    tg.push_update({"callback_query": pressed["callback_query"]})
    await tg.wait_for_call("getUpdates", lambda c: c.params.get("offset", 0) > pressed["update_id"] + 1)
    survey_cases = await rows(service, select(cases.c.id).where(cases.c.survey_instance_id.isnot(None)))
    assert [c.id for c in survey_cases] == [opened.id]
    detail = await service.cases.get_case(opened.id)
    assert "Funciona el equipo? → no (weight -100) ⚠ detractor" in detail["description"]
    assert detail["survey"]["sale"]["external_id"] == "TG-1" and detail["channel"] == "telegram"
    assert sum("contactar contigo" in m["text"] for m in detail["messages"]) == 1

    f = PanelFilter(seller="marta")
    assert [(i["case_number"], i["state"]) for i in (await service.surveys.panel.detractors(f))["items"]] == [
        (opened.id, "open")]
    # The agent answers on the customer's Telegram, then closes the case.
    await service.cases.reply(opened.id, "Hola Ana, te cambiamos el equipo.", agent="ana")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA
                           and "te cambiamos el equipo" in c.params["text"])
    assert (await service.surveys.panel.detractors(f))["items"][0]["state"] == "answered"
    await service.cases.change_activity(opened.id, "closed", agent="ana")
    view = await service.surveys.panel.detractors(f)
    assert view["counts"] == {"open": 0, "answered": 0, "closed": 1} and view["items"][0]["state"] == "closed"


def test_the_desk_header_card_names_the_survey_and_the_sale():
    from posventa.bots.telegram.render import header_card

    case = {"number": 7, "title": "Detractor survey «Entrega» — sale TG-1", "type": "complaint",
            "activity": "preliminary_analysis", "channel": "telegram", "contact": {"name": "Ana"},
            "survey": {"instance_id": 3, "status": "executed", "rule": {"id": 1, "name": "Entrega <b>"},
                       "sale": {"id": 9, "external_id": "TG-1", "seller": "marta"}}}
    card = header_card(case, "es")
    assert "<b>Encuesta con respuesta detractora:</b> #3 «Entrega &lt;b&gt;» · venta TG-1 (marta)" in card
    assert "Encuesta" not in header_card({**case, "survey": None}, "es")
