"""Merging contacts: a web chat visitor and an email contact become one customer, with
their cases, survey sales and history; refusals name the field; on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.errors import ValidationError
from posventa.core.persistence.schema import case_events, rule_instances, sales
from posventa.intake.webchat.sessions import SessionStore
from tests.core.test_api import call, running, spec  # noqa: F401  (fixtures)


async def _visitor_and_mailer(service):
    """A web chat visitor who typed ana@cliente.example in the form, and mail from it."""
    store = SessionStore(db=service.db, clock=service.clock)
    _, session = await store.create(language="es", name="Ana", email="ana@cliente.example")
    chat = await service.inbox.receive(InboundMessage(channel=ChannelName.WEBCHAT, external_id="c-1",
                                                      sender=session.public_id, text="Hola, el pedido"))
    mail = await service.inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id="<e1@cliente.example>",
                                                      sender="ana@cliente.example", sender_name="Ana Pérez",
                                                      text="Escribo por mail", subject="Pedido"))
    return session, chat, mail


async def _sale_with_survey(service, email: str) -> None:
    from posventa.core.surveys import Surveys
    from posventa.core.surveys.sales import Customer, SaleInput

    surveys = Surveys.build(db=service.db, outgoing=service.outgoing, clock=service.clock,
                            config=service.config.surveys)
    await surveys.catalog.create_question({
        "code": "nps", "scale": "0-10", "weights": [-100, -100, -80, -60, -40, -20, 0, 20, 60, 80, 100],
        "text": {"es": "¿Nos recomendaría?", "pt": "Nos recomendaria?", "en": "Would you recommend us?"}})
    await surveys.catalog.create_rule({"name": "R", "start_after_days": 1, "expires_after_days": 7,
                                       "questions": ["nps"], "operators": ["op"]})
    await surveys.catalog.create_profile({"name": "P", "rules": ["R"]})
    await surveys.catalog.create_product({"code": "X-1", "name": "X", "profile": "P"})
    [result] = await surveys.sales.record([SaleInput(
        external_id="S-1", product="X-1", seller="Vendedor", closed_at=service.clock.now() - timedelta(days=2),
        customer=Customer(email=email))])
    assert result.instances == 1, result


async def test_a_web_chat_visitor_and_an_email_contact_merged_show_both_cases(running, spec):
    service, http, _ = running
    session, chat, mail = await _visitor_and_mailer(service)
    mailer = (await call(http, spec, "GET", "/cases/{number}", f"/cases/{mail.case_number}", status=200))["contact_id"]
    visitor = (await call(http, spec, "GET", "/cases/{number}", f"/cases/{chat.case_number}", status=200))["contact_id"]
    assert mailer != visitor
    await _sale_with_survey(service, "ana@cliente.example")

    # The typed address never joined the chat to the mail contact: it is a suggestion.
    detail = await call(http, spec, "GET", "/contacts/{id}", f"/contacts/{mailer}", status=200)
    assert [(d["contact"]["id"], d["reason"]) for d in detail["duplicates"]] == [(visitor, "email")]

    preview = await call(http, spec, "POST", "/contacts/{id}/merge", f"/contacts/{visitor}/merge?dry_run=true",
                         status=200, json={"contact_id": mailer})
    assert preview["dry_run"] and preview["moves"]["cases"] == 1 and preview["moves"]["identities"] == 1
    assert preview["moves"]["sales"] == 1 and preview["moves"]["survey_instances"] == 1
    still = await call(http, spec, "GET", "/contacts/{id}/cases", f"/contacts/{mailer}/cases", status=200)
    assert [c["number"] for c in still["cases"]] == [mail.case_number]

    merged = await call(http, spec, "POST", "/contacts/{id}/merge", f"/contacts/{visitor}/merge", status=200,
                        json={"contact_id": mailer, "agent": "maria"})
    assert not merged["dry_run"] and merged["moves"] == preview["moves"]
    both = await call(http, spec, "GET", "/contacts/{id}/cases", f"/contacts/{visitor}/cases", status=200)
    assert sorted(c["number"] for c in both["cases"]) == sorted([chat.case_number, mail.case_number])
    kept = await call(http, spec, "GET", "/contacts/{id}", f"/contacts/{visitor}", status=200)
    assert sorted(i["kind"] for i in kept["identities"]) == ["email", "webchat"]
    assert kept["history"][-1]["actor"] == "agent:maria" and f"#{mailer}" in kept["history"][-1]["detail"]
    assert kept["duplicates"] == []
    gone = await call(http, spec, "GET", "/contacts/{id}", f"/contacts/{mailer}", status=200)
    assert gone["merged_into_id"] == visitor and gone["identities"] == []
    found = await call(http, spec, "GET", "/contacts", "/contacts?q=ana", status=200)
    assert [c["id"] for c in found["contacts"]] == [visitor]
    async with service.db.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(sales).where(
            sales.c.contact_id == visitor))).scalar_one() == 1
        assert (await conn.execute(select(func.count()).select_from(rule_instances).where(
            rule_instances.c.contact_id == visitor))).scalar_one() == 1
        assert (await conn.execute(select(func.count()).select_from(case_events).where(
            case_events.c.case_id == mail.case_number, case_events.c.kind == "contact_merged"))).scalar_one() == 1

    # The next mail from that address is the merged customer's.
    later = await service.inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id="<e2@cliente.example>",
                                                       sender="ana@cliente.example", text="Otra cosa"))
    case = await call(http, spec, "GET", "/cases/{number}", f"/cases/{later.case_number}", status=200)
    assert case["contact_id"] == visitor

    # Refusals, each naming the field.
    for target, body, field in ((visitor, {"contact_id": visitor}, "contact_id"),
                                (visitor, {"contact_id": mailer}, "contact_id"),
                                (mailer, {"contact_id": visitor}, "id"),
                                (visitor, {"contact_id": 999999}, "contact_id"),
                                (visitor, {"contact_id": "x"}, "contact_id"),
                                (visitor, {}, "contact_id")):
        refused = await call(http, spec, "POST", "/contacts/{id}/merge", f"/contacts/{target}/merge", status=422,
                             json=body)
        assert refused["field"] == field, refused
    await call(http, spec, "POST", "/contacts/{id}/merge", "/contacts/999999/merge", status=404,
               json={"contact_id": visitor})
    await call(http, spec, "POST", "/contacts/{id}/merge", f"/contacts/{visitor}/merge?dry_run=maybe", status=422,
               json={"contact_id": mailer})


async def test_organizations_merge_the_same_way(running, spec):
    service, http, _ = running
    a = await call(http, spec, "POST", "/organizations", status=201, json={"name": "Acme", "domains": ["acme.example"]})
    b = await call(http, spec, "POST", "/organizations", status=201,
                   json={"name": "ACME S.A.", "tax_id": "30-1", "domains": ["acme-sa.example"]})
    receipt = await service.inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id="<o1@acme-sa.example>",
                                                         sender="z@acme-sa.example", text="Hola"))
    preview = await call(http, spec, "POST", "/organizations/{id}/merge", f"/organizations/{a['id']}/merge?dry_run=true",
                         status=200, json={"organization_id": b["id"]})
    assert preview["moves"] == {"contacts": 1, "cases": 1, "domains": 1}
    await call(http, spec, "POST", "/organizations/{id}/merge", f"/organizations/{a['id']}/merge", status=200,
               json={"organization_id": b["id"]})
    org = await call(http, spec, "GET", "/organizations/{id}", f"/organizations/{a['id']}", status=200)
    assert org["domains"] == ["acme-sa.example", "acme.example"] and org["tax_id"] == "30-1"
    assert [c["number"] for c in org["open_cases"]] == [receipt.case_number]
    listed = await call(http, spec, "GET", "/organizations", "/organizations?q=acme", status=200)
    assert [o["id"] for o in listed["organizations"]] == [a["id"]]
    refused = await call(http, spec, "POST", "/organizations/{id}/merge", f"/organizations/{a['id']}/merge",
                         status=422, json={"organization_id": b["id"]})
    assert refused["field"] == "organization_id" and "already merged" in refused["message"]


async def test_a_sale_finds_its_customer_by_email_then_phone_then_telegram(running, spec):
    service, http, _ = running
    from posventa.core.surveys import Surveys
    from posventa.core.surveys.sales import Customer, SaleInput

    by_phone = await call(http, spec, "POST", "/contacts", status=201, json={
        "name": "Por teléfono", "identities": [{"kind": "phone", "address": "+54 9 11 4444-0000"}]})
    async def contact_of(message: InboundMessage) -> int:
        receipt = await service.inbox.receive(message)
        return (await service.cases.get_case(receipt.case_number))["contact"]["id"]

    by_telegram = await contact_of(InboundMessage(channel=ChannelName.TELEGRAM, external_id="9:1", sender="9",
                                                  text="hola"))
    by_email = await contact_of(InboundMessage(channel=ChannelName.EMAIL, external_id="<s@x.example>",
                                               sender="eva@x.example", text="hola"))
    surveys = Surveys.build(db=service.db, outgoing=service.outgoing, clock=service.clock,
                            config=service.config.surveys)
    await surveys.catalog.create_product({"code": "P-1", "name": "P"})
    now = service.clock.now()

    def sale(n: int, **customer) -> SaleInput:
        return SaleInput(external_id=f"S-{n}", product="P-1", seller="V", closed_at=now, customer=Customer(**customer))

    results = await surveys.sales.record([
        sale(1, email="eva@x.example", phone="+5491144440000", phone_e164="+5491144440000",
             telegram_id="9"),  # email wins
        sale(2, phone="+5491144440000", phone_e164="+5491144440000", telegram_id="9"),  # then the phone
        sale(3, telegram_id="9"),
        sale(4, email="new@y.example", name="Nueva"),  # nobody: a new contact
    ])
    assert [r.contact_id for r in results[:3]] == [by_email, by_phone["id"], by_telegram]
    new = await call(http, spec, "GET", "/contacts", "/contacts?q=nueva", status=200)
    assert [c["id"] for c in new["contacts"]] == [results[3].contact_id]
    # A sale's phone is normalised like any other; one that is no valid number is kept as
    # typed (an operator may still call it) but never finds anybody.
    typed = surveys.sales.validate({"external_id": "S-9", "product": "P-1", "seller": "V",
                                    "closed_at": "2026-01-01", "customer": {"phone": "011 15 4444-0000"}})
    assert typed.customer.keys() == [("phone", "+5491144440000")]
    junk = surveys.sales.validate({"external_id": "S-9", "product": "P-1", "seller": "V",
                                   "closed_at": "2026-01-01", "customer": {"phone": "123"}})
    assert junk.customer.phone == "123" and junk.customer.keys() == []
    with pytest.raises(ValidationError) as bad:
        surveys.sales.validate({"external_id": "S-9", "product": "P-1", "seller": "V", "closed_at": "2026-01-01",
                                "customer": {"name": "Nadie"}})
    assert bad.value.field == "customer"
