"""The contact in the agents' Telegram desk: /contact in a case topic."""

from __future__ import annotations

from tests.bots.conftest import (  # noqa: F401  (fixtures)
    AGENTS_CHAT,
    AGENT,
    _garbage_of_this_test_collected_here,
    sqlite_only,
    start_service,
    tg,
)
from tests.bots.test_telegram_desk import topic_of_first_case
from tests.fakes.telegram_api import FakeTelegram

ANA = 4301


@sqlite_only
async def test_contact_command_shows_the_customer_record(start_service, tg: FakeTelegram):
    service = await start_service()
    org = await service.organizations.create({"name": "Acme"}, actor="test")
    tg.private_text(ANA, "La factura no llegó", first_name="Ana")
    thread = await topic_of_first_case(tg)
    case = await service.cases.get_case(1)
    await service.contacts.update(case["contact"]["id"], {"organization_id": org["id"]}, actor="test")
    twin = await service.contacts.create({"name": "Ana", "organization_id": org["id"]}, actor="test")

    tg.group_text(AGENTS_CHAT, AGENT, "/contact", thread_id=thread, first_name="María")
    call = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == AGENTS_CHAT and
                                  "Contacto #" in c.params.get("text", ""))
    text = call.params["text"]
    assert f"Contacto #{case['contact']['id']}: Ana · Acme" in text
    assert f"telegram {ANA}" in text and "#1 (telegram, preliminary_analysis)" in text
    assert f"Posibles duplicados: #{twin['id']}" in text
