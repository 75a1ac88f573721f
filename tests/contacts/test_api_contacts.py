"""/api/v1/contacts and /api/v1/organizations over real HTTP, on both databases."""

from __future__ import annotations

from posventa.core.domain import ChannelName, InboundMessage
from tests.core.test_api import call, running, spec  # noqa: F401  (fixtures)


def mail(sender: str, msgid: str, text: str = "Hola", **kw) -> InboundMessage:
    return InboundMessage(channel=ChannelName.EMAIL, external_id=msgid, sender=sender, text=text, **kw)


async def test_an_email_from_a_listed_domain_lands_in_the_organization(running, spec):
    service, http, _ = running
    acme = await call(http, spec, "POST", "/organizations", status=201,
                      json={"name": "Acme", "tax_id": "30-71234567-1", "domains": ["Acme.example"]})
    assert acme["domains"] == ["acme.example"]
    receipt = await service.inbox.receive(mail("x@acme.example", "<m1@acme.example>", sender_name="Xavier Pérez"))
    case = await call(http, spec, "GET", "/cases/{number}", f"/cases/{receipt.case_number}", status=200)
    assert case["organization"] == "Acme" and case["organization_id"] == acme["id"]
    found = await call(http, spec, "GET", "/contacts", "/contacts?q=perez", status=200)
    [contact] = found["contacts"]
    assert contact["organization"] == {"id": acme["id"], "name": "Acme"}
    assert contact["id"] == case["contact_id"]
    org = await call(http, spec, "GET", "/organizations/{id}", f"/organizations/{acme['id']}", status=200)
    assert [c["id"] for c in org["contacts"]] == [contact["id"]]
    assert [c["number"] for c in org["open_cases"]] == [receipt.case_number] and org["open_case_count"] == 1
    # Another domain, or a public one, does not join anything.
    other = await service.inbox.receive(mail("y@elsewhere.example", "<m2@elsewhere.example>"))
    case = await call(http, spec, "GET", "/cases/{number}", f"/cases/{other.case_number}", status=200)
    assert case["organization"] is None


async def test_organization_domains_are_checked(running, spec):
    _, http, _ = running
    bad = await call(http, spec, "POST", "/organizations", status=422, json={"name": "X", "domains": ["gmail.com"]})
    assert bad["field"] == "domains" and "public" in bad["message"]
    await call(http, spec, "POST", "/organizations", status=422, json={"name": "X", "domains": ["not a domain"]})
    await call(http, spec, "POST", "/organizations", status=422, json={"domains": ["x.example"]})
    a = await call(http, spec, "POST", "/organizations", status=201, json={"name": "A", "domains": ["a.example"]})
    taken = await call(http, spec, "POST", "/organizations", status=422, json={"name": "B", "domains": ["a.example"]})
    assert f"#{a['id']}" in taken["message"]
    renamed = await call(http, spec, "PATCH", "/organizations/{id}", f"/organizations/{a['id']}", status=200,
                         json={"name": "A SA", "domains": ["a.example", "a2.example"]})
    assert renamed["name"] == "A SA" and renamed["domains"] == ["a.example", "a2.example"]
    listed = await call(http, spec, "GET", "/organizations", "/organizations?q=a%20s", status=200)
    assert [o["id"] for o in listed["organizations"]] == [a["id"]]
    await call(http, spec, "PATCH", "/organizations/{id}", f"/organizations/{a['id']}", status=422,
               json={"bogus": 1})
    await call(http, spec, "GET", "/organizations/{id}", "/organizations/999999", status=404)


async def test_contact_crud_identities_and_search(running, spec):
    service, http, _ = running
    org = await call(http, spec, "POST", "/organizations", status=201, json={"name": "Cliente SA"})
    ana = await call(http, spec, "POST", "/contacts", status=201, json={
        "name": "Ana Pérez", "language": "pt", "organization_id": org["id"], "notes": "Prefiere WhatsApp",
        "attributes": {"customer_number": "A-17"},
        "identities": [{"kind": "email", "address": "Ana@Cliente.com"},
                       {"kind": "phone", "address": "011 15-5555-1234"}]})
    assert [(i["kind"], i["address"], i["verified"]) for i in ana["identities"]] == [
        ("email", "ana@cliente.com", False), ("phone", "+5491155551234", False)]
    assert ana["email"] == "ana@cliente.com" and ana["phone"] == "+5491155551234"
    assert ana["organization"]["name"] == "Cliente SA" and ana["attributes"] == {"customer_number": "A-17"}

    # The number as dialled at home (trunk 0, the mobile's 15) finds it too.
    for q in ("ana", "PEREZ", "ana per", "ana@cli", "cliente.com", "+54 9 11 5555-1234", "91155551234",
              "011 15-5555-1234", "(011) 15 5555 1234"):
        found = await call(http, spec, "GET", "/contacts", f"/contacts?q={q.replace('+', '%2B')}", status=200)
        assert [c["id"] for c in found["contacts"]] == [ana["id"]], q
    for q in ("nobody", "ana lopez", "5555"):
        found = await call(http, spec, "GET", "/contacts", f"/contacts?q={q}", status=200)
        assert found["contacts"] == [], q
    by_org = await call(http, spec, "GET", "/contacts", f"/contacts?organization={org['id']}", status=200)
    assert [c["id"] for c in by_org["contacts"]] == [ana["id"]]

    bad_phone = await call(http, spec, "POST", "/contacts", status=422,
                           json={"name": "B", "identities": [{"kind": "phone", "address": "12"}]})
    assert bad_phone["field"] == "identities[0].address"
    duplicate = await call(http, spec, "POST", "/contacts", status=422,
                           json={"name": "B", "identities": [{"kind": "email", "address": "ana@cliente.com"}]})
    assert f"#{ana['id']}" in duplicate["message"] and "merge" in duplicate["message"]
    await call(http, spec, "POST", "/contacts", status=422, json={"name": "B", "language": "fr"})
    await call(http, spec, "POST", "/contacts", status=422, json={"name": "B", "organization_id": 999999})
    await call(http, spec, "POST", "/contacts", status=422, json={})
    await call(http, spec, "POST", "/contacts", status=422, json={"name": "B", "attributes": {"k": ["list"]}})

    updated = await call(http, spec, "PATCH", "/contacts/{id}", f"/contacts/{ana['id']}", status=200,
                         json={"name": "Ana María Pérez", "notes": None, "agent": "maria"})
    assert updated["name"] == "Ana María Pérez" and updated["notes"] is None
    assert updated["history"][-1]["actor"] == "agent:maria"
    found = await call(http, spec, "GET", "/contacts", "/contacts?q=maria", status=200)
    assert [c["id"] for c in found["contacts"]] == [ana["id"]]

    tg = await call(http, spec, "POST", "/contacts/{id}/identities", f"/contacts/{ana['id']}/identities", status=201,
                    json={"kind": "telegram", "address": "424242"})
    assert tg["kind"] == "telegram" and not tg["verified"]
    await call(http, spec, "POST", "/contacts/{id}/identities", f"/contacts/{ana['id']}/identities", status=422,
               json={"kind": "telegram", "address": "not-a-number"})
    await call(http, spec, "POST", "/contacts/{id}/identities", f"/contacts/{ana['id']}/identities", status=422,
               json={"kind": "fax", "address": "1"})
    async with http.delete(f"/api/v1/contacts/{ana['id']}/identities/{tg['id']}") as r:
        assert r.status == 204
    async with http.delete(f"/api/v1/contacts/{ana['id']}/identities/{tg['id']}") as r:
        assert r.status == 404

    # The customer writes from the address the agent typed: the mail joins Ana, verified.
    receipt = await service.inbox.receive(mail("ana@cliente.com", "<a1@cliente.com>"))
    cases = await call(http, spec, "GET", "/contacts/{id}/cases", f"/contacts/{ana['id']}/cases", status=200)
    assert [c["number"] for c in cases["cases"]] == [receipt.case_number]
    detail = await call(http, spec, "GET", "/contacts/{id}", f"/contacts/{ana['id']}", status=200)
    assert [(i["kind"], i["verified"]) for i in detail["identities"]] == [("email", True), ("phone", False)]
    # The history says what happened as a code and its values, and in English (whatever the
    # request's language: the API's texts are English).
    history = [{k: h[k] for k in ("kind", "code", "values", "detail")} for h in detail["history"]]
    assert history == [
        {"kind": "created", "code": None, "values": {}, "detail": None},
        {"kind": "updated", "code": "contact_history_updated", "values": {"fields": ["name", "notes"]},
         "detail": "changed: name, notes"},
        {"kind": "identity_added", "code": "contact_history_identity_added",
         "values": {"channel": "telegram", "address": "424242"}, "detail": "telegram: 424242"},
        {"kind": "identity_removed", "code": "contact_history_identity_removed",
         "values": {"channel": "telegram", "address": "424242"}, "detail": "telegram: 424242"}]
    async with http.get(f"/api/v1/contacts/{ana['id']}", headers={"Accept-Language": "es"}) as r:
        assert (await r.json())["history"] == detail["history"]
    await call(http, spec, "GET", "/contacts/{id}", "/contacts/999999", status=404)
    await call(http, spec, "GET", "/contacts/{id}/cases", "/contacts/999999/cases", status=404)


async def test_duplicate_suggestions(running, spec):
    service, http, _ = running
    org = await call(http, spec, "POST", "/organizations", status=201, json={"name": "Org"})
    a = await call(http, spec, "POST", "/contacts", status=201, json={
        "name": "Juan Gómez", "organization_id": org["id"],
        "identities": [{"kind": "email", "address": "juan@x.example"}]})
    b = await call(http, spec, "POST", "/contacts", status=201, json={"name": "juan gómez", "organization_id": org["id"]})
    c = await call(http, spec, "POST", "/contacts", status=201, json={"name": "Otro"})
    # The name as a search folds it: without the accent it is the same person; a longer
    # name, or the same name elsewhere, is not.
    unaccented = await call(http, spec, "POST", "/contacts", status=201,
                            json={"name": "Juan  Gomez", "organization_id": org["id"]})
    await call(http, spec, "POST", "/contacts", status=201,
               json={"name": "Juan Gómez Ruiz", "organization_id": org["id"]})
    await call(http, spec, "POST", "/contacts", status=201, json={"name": "Juan Gómez"})
    detail = await call(http, spec, "GET", "/contacts/{id}", f"/contacts/{a['id']}", status=200)
    assert [(d["contact"]["id"], d["reason"]) for d in detail["duplicates"]] == [
        (b["id"], "name_and_organization"), (unaccented["id"], "name_and_organization")]
    detail = await call(http, spec, "GET", "/contacts/{id}", f"/contacts/{c['id']}", status=200)
    assert detail["duplicates"] == []


async def test_manual_cases_take_an_existing_contact_and_organization_or_create_them(running, spec):
    service, http, _ = running
    org = await call(http, spec, "POST", "/organizations", status=201, json={"name": "Acme"})
    ana = await call(http, spec, "POST", "/contacts", status=201, json={
        "name": "Ana", "organization_id": org["id"], "identities": [{"kind": "phone", "address": "+54 9 11 4444-1111"}]})
    by_id = await call(http, spec, "POST", "/cases", status=201, json={
        "title": "Llamó", "description": "Por la factura", "type": "request", "contact_id": ana["id"]})
    assert by_id["contact_id"] == ana["id"] and by_id["organization_id"] == org["id"]
    # The phone she gave is hers: the case joins her, whatever way it was typed.
    by_phone = await call(http, spec, "POST", "/cases", status=201, json={
        "title": "Llamó otra vez", "description": "Sigue", "type": "request",
        "contact": {"phone": "011 15 4444-1111"}})
    assert by_phone["contact_id"] == ana["id"]
    created = await call(http, spec, "POST", "/cases", status=201, json={
        "title": "Nuevo", "description": "Primera vez", "type": "request", "contact": {"name": "Beto", "email": "Beto@Beta.example",
                                                                    "phone": "+55 11 98765-4321"},
        "organization_id": org["id"]})
    beto = await call(http, spec, "GET", "/contacts/{id}", f"/contacts/{created['contact_id']}", status=200)
    assert beto["organization"]["id"] == org["id"]
    assert [(i["kind"], i["address"]) for i in beto["identities"]] == [
        ("email", "beto@beta.example"), ("phone", "+5511987654321")]
    for body, field in (({"contact_id": 999999}, "contact_id"), ({"contact": {"phone": "12"}}, "contact.phone"),
                        ({"contact": {"email": "nope"}}, "contact.email"),
                        ({"contact_id": ana["id"], "organization_id": 999999}, "organization_id")):
        refused = await call(http, spec, "POST", "/cases", status=422,
                             json={"title": "x", "description": "y", "type": "request", **body})
        assert refused["field"] == field, refused


async def test_a_word_shorter_than_three_letters_matches_whole_words_only(running, spec):
    _, http, _ = running
    al = await call(http, spec, "POST", "/contacts", status=201, json={"name": "Al Di Meola"})
    await call(http, spec, "POST", "/contacts", status=201, json={"name": "Alba Dimas"})
    found = await call(http, spec, "GET", "/contacts", "/contacts?q=al%20di", status=200)
    assert [c["id"] for c in found["contacts"]] == [al["id"]]
    found = await call(http, spec, "GET", "/contacts", "/contacts?q=alb", status=200)
    assert [c["name"] for c in found["contacts"]] == ["Alba Dimas"]
