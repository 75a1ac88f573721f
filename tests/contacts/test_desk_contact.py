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
    thread = await topic_of_first_case(tg, service)
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


async def test_contact_command_names_an_erased_contact_in_the_desks_language(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "Borren mis datos, por favor", first_name="Ana")
    thread = await topic_of_first_case(tg, service)
    contact_id = (await service.cases.get_case(1))["contact"]["id"]
    await service.contacts.erase(contact_id, actor="test")

    tg.group_text(AGENTS_CHAT, AGENT, "/contact", thread_id=thread, first_name="María")
    call = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == AGENTS_CHAT and
                                  "Contacto #" in c.params.get("text", ""))
    text = call.params["text"]
    assert f"Contacto #{contact_id}: contacto borrado #{contact_id}" in text and "erased contact" not in text
    assert "Identidades: —" in text  # erasure removed them


def test_an_erased_contacts_name_in_each_desk_language():
    from posventa.bots.telegram.render import header_card
    from posventa.bots.telegram.texts import contact_name

    assert contact_name("erased contact #5", 5, "pt") == "contato apagado #5"
    assert contact_name("erased contact #5", 5, "en") == "erased contact #5"
    assert contact_name("erased contact #5", 6, "es") == "erased contact #5"  # not that contact's erasure
    assert contact_name("Ana", 5, "es") == "Ana" and contact_name(None, 5, "es") is None
    card = header_card({"number": 3, "title": "t", "contact": {"id": 5, "name": "erased contact #5"}}, "es")
    assert "Cliente:</b> contacto borrado #5" in card
