"""Bad input about contacts gets a 4xx naming the field, through the API and through the
console's forms alike (one core rule behind both): an invalid phone, an identity another
contact holds, a public mail domain on an organization, merging across a merged or an
erased contact. On both databases."""

from __future__ import annotations

import aiohttp
import pytest

from posventa.core.domain import ChannelName, InboundMessage
from tests.support import API_TOKEN


@pytest.fixture
async def http(running):
    async with aiohttp.ClientSession(f"{running.base}/api/v1/", headers={"Authorization": f"Bearer {API_TOKEN}"}) as s:
        yield s


async def refused(http, method: str, path: str, body: dict, status: int = 422) -> dict:
    async with http.request(method, path.lstrip("/"), json=body) as r:
        answer = await r.json()
        assert r.status == status, answer
        return answer


async def _contact(running, sender: str, msgid: str) -> int:
    receipt = await running.service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=msgid, sender=sender, sender_name="Ana", text="Hola"))
    return (await running.service.cases.get_case(receipt.case_number))["contact"]["id"]


def field_error(page: str, field: str) -> str:
    """The message shown next to the form field (the console's field_error macro)."""
    marker = f'id="error-{field}"'
    assert marker in page, f"no error shown at {field}"
    return page.split(marker, 1)[1].split(">", 1)[1].split("</p>", 1)[0]


async def test_invalid_phone_and_duplicate_identity(running, agent, http):
    ana = await _contact(running, "ana@cliente.example", "<b1@cliente.example>")
    bea = await _contact(running, "bea@cliente.example", "<b2@cliente.example>")

    # An invalid phone.
    for address in ("12", "not a phone", "+54 9 11 5555-1234-9999-0000"):
        answer = await refused(http, "POST", f"/contacts/{ana}/identities", {"kind": "phone", "address": address})
        assert answer["field"] == "address" and "phone" in answer["message"], answer
        status, page = await agent.post(f"/console/contacts/{ana}/identities", {"kind": "phone", "address": address})
        assert status == 422 and "phone" in field_error(page, "address")
    answer = await refused(http, "POST", "/cases", {"title": "Llamó", "description": "x", "type": "request",
                                                    "contact": {"name": "Leo", "phone": "12"}})
    assert answer["field"] == "contact.phone", answer
    status, page = await agent.post("/console/cases/new", {"title": "Llamó", "description": "x", "type": "request",
                                                           "contact_name": "Leo", "contact_phone": "12"})
    assert status == 422 and field_error(page, "contact-phone")

    # An identity another contact holds: refused, pointing at the merge instead.
    answer = await refused(http, "POST", f"/contacts/{bea}/identities",
                           {"kind": "email", "address": "ANA@cliente.example"})
    assert answer["field"] == "address" and f"#{ana}" in answer["message"] and "merge" in answer["message"]
    answer = await refused(http, "POST", "/contacts", {"name": "Otra Ana",
                                                       "identities": [{"kind": "email", "address": "ana@cliente.example"}]})
    assert answer["field"] == "identities[0].address", answer
    status, page = await agent.post(f"/console/contacts/{bea}/identities",
                                    {"kind": "email", "address": "ana@cliente.example"})
    assert status == 422 and f"#{ana}" in field_error(page, "address")
    assert [i["address"] for i in (await running.service.contacts.get(bea))["identities"]] == ["bea@cliente.example"]


async def test_a_public_mail_domain_on_an_organization(running, agent, http):
    answer = await refused(http, "POST", "/organizations", {"name": "Gmail", "domains": ["gmail.com"]})
    assert answer["field"] == "domains" and "public" in answer["message"]
    org = await running.service.organizations.create({"name": "Acme", "domains": ["acme.example"]}, actor="test")
    answer = await refused(http, "PATCH", f"/organizations/{org['id']}", {"domains": ["acme.example", "Hotmail.com"]})
    assert answer["field"] == "domains", answer
    status, page = await agent.post("/console/organizations", {"name": "Gmail", "domains": "gmail.com"})
    assert status == 422 and "public" in field_error(page, "domains")
    status, page = await agent.post(f"/console/organizations/{org['id']}", {"name": "Acme",
                                                                         "domains": "acme.example outlook.com"})
    assert status == 422 and "public" in field_error(page, "domains")
    assert (await running.service.organizations.get(org["id"]))["domains"] == ["acme.example"]


async def test_merging_across_a_merged_or_erased_contact(running, agent, http):
    service = running.service
    ana = await _contact(running, "ana@cliente.example", "<m1@cliente.example>")
    absorbed = await _contact(running, "ana.perez@cliente.example", "<m2@cliente.example>")
    erased = await _contact(running, "bea@cliente.example", "<m3@cliente.example>")
    await service.contacts.merge(ana, absorbed, actor="test")
    await service.contacts.erase(erased, actor="test")

    for target, source, field in ((ana, absorbed, "contact_id"), (ana, erased, "contact_id"),
                                  (absorbed, ana, "id"), (erased, ana, "id")):
        answer = await refused(http, "POST", f"/contacts/{target}/merge", {"contact_id": source})
        assert answer["field"] == field and ("merged" in answer["message"] or "erased" in answer["message"]), answer
    # The console shows the refusal at the merge form's field.
    for source in (absorbed, erased):
        status, page = await agent.post(f"/console/contacts/{ana}/merge", {"source": str(source)})
        assert status == 422 and ("merged" in field_error(page, "source") or "erased" in field_error(page, "source"))
    # Merging into a contact that is gone (a stale page): said at the top of its page, which
    # shows no merge form any more.
    for gone, word in ((absorbed, "merged"), (erased, "erased")):
        status, page = await agent.post(f"/console/contacts/{gone}/merge", {"source": str(ana)})
        assert status == 422 and word in field_error(page, "contact_id") and 'id="error-source"' not in page
    status, page = await agent.post(f"/console/contacts/{ana}/merge", {"source": "not a number"})
    assert status == 422 and field_error(page, "source")
    # Nor may a merged or erased contact be edited or given identities.
    for gone in (absorbed, erased):
        answer = await refused(http, "POST", f"/contacts/{gone}/identities", {"kind": "phone", "address": "+5491155551234"})
        assert answer["field"] == "contact_id", answer
        status, page = await agent.post(f"/console/contacts/{gone}", {"name": "Otra"})
        assert status == 422 and field_error(page, "contact_id")


async def test_merging_into_or_from_a_merged_organization(running, agent, http):
    service = running.service
    acme = await service.organizations.create({"name": "Acme"}, actor="test")
    beta = await service.organizations.create({"name": "Beta"}, actor="test")
    gamma = await service.organizations.create({"name": "Gamma"}, actor="test")
    await service.organizations.merge(acme["id"], beta["id"], actor="test")

    for target, source, field in ((acme, beta, "organization_id"), (beta, gamma, "id"), (acme, acme, "organization_id")):
        answer = await refused(http, "POST", f"/organizations/{target['id']}/merge", {"organization_id": source["id"]})
        assert answer["field"] == field, answer
    answer = await refused(http, "PATCH", f"/organizations/{beta['id']}", {"name": "Beta SA"})
    assert answer["field"] == "organization_id" and "merged" in answer["message"], answer

    # The console: absorbing a merged organization is refused at the form's field; a stale
    # page of the merged one (no forms any more) says why at the top, for a merge and an edit.
    status, page = await agent.post(f"/console/organizations/{gamma['id']}/merge", {"source": str(beta["id"])})
    assert status == 422 and "merged" in field_error(page, "source")
    status, page = await agent.post(f"/console/organizations/{beta['id']}/merge", {"source": str(gamma["id"])})
    assert status == 422 and "merged" in field_error(page, "organization_id")
    status, page = await agent.post(f"/console/organizations/{beta['id']}", {"name": "Beta SA"})
    assert status == 422 and "merged" in field_error(page, "organization_id")
    assert (await service.organizations.get(beta["id"]))["name"] == "Beta"
    assert (await service.organizations.get(gamma["id"]))["merged_into_id"] is None
