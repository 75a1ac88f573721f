"""The contact and organization pages over real HTTP on both databases."""

from __future__ import annotations

from core.domain import ChannelName, InboundMessage


async def _email(running, sender: str, external_id: str, name: str = "Ana Pérez") -> int:
    receipt = await running.service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=external_id, sender=sender, sender_name=name, text="Hola",
        subject="Pedido"))
    return receipt.case_number


async def test_contact_page_from_the_case_and_the_inbox(running, agent):
    org = await running.service.organizations.create({"name": "Acme <b>SA</b>", "domains": ["acme.example"]},
                                                     actor="test")
    number = await _email(running, "x@acme.example", "<m1@acme.example>", name="Xavier <i>Pérez</i>")
    case = await running.service.cases.get_case(number)
    contact_id = case["contact"]["id"]
    status, page = await agent.get(f"/console/cases/{number}")
    assert status == 200 and f'href="/console/contacts/{contact_id}"' in page
    assert f'href="/console/organizations/{org["id"]}"' in page
    status, page = await agent.get("/console/inbox")
    assert f'href="/console/contacts/{contact_id}"' in page

    status, page = await agent.get(f"/console/contacts/{contact_id}")
    assert status == 200 and "Xavier &lt;i&gt;Pérez&lt;/i&gt;" in page and "<i>Pérez" not in page
    assert f'data-case="{number}"' in page and "x@acme.example" in page and "Acme &lt;b&gt;SA&lt;/b&gt;" in page

    status, page = await agent.post(f"/console/contacts/{contact_id}/identities",
                                    {"kind": "phone", "address": "not a phone"})
    assert status == 422 and "not a phone number" in page
    status, page = await agent.post(f"/console/contacts/{contact_id}/identities",
                                    {"kind": "phone", "address": "+54 9 11 5555-1234"})
    assert status == 200 and "+5491155551234" in page and "Identity added" in page
    status, page = await agent.post(f"/console/contacts/{contact_id}",
                                    {"name": "Xavier Pérez", "language": "pt", "organization_id": str(org["id"]),
                                     "notes": "VIP", "attributes": "customer_number = A-17\n"})
    assert status == 200 and "Contact saved" in page
    stored = await running.service.contacts.get(contact_id)
    assert stored["language"] == "pt" and stored["attributes"] == {"customer_number": "A-17"}
    status, page = await agent.post(f"/console/contacts/{contact_id}", {"name": "X", "attributes": "no equals"})
    assert status == 422 and "key = value" in page

    status, page = await agent.get("/console/contacts?q=xavier")
    assert status == 200 and f'data-contact="{contact_id}"' in page
    status, page = await agent.get("/console/contacts?q=nobody")
    assert f'data-contact="{contact_id}"' not in page and "No contacts match" in page
    status, _ = await agent.get("/console/contacts/999999")
    assert status == 404


async def test_organization_pages(running, agent):
    status, page = await agent.post("/console/organizations", {"name": "Beta", "domains": "gmail.com"})
    assert status == 422 and "public mail domain" in page
    status, page = await agent.post("/console/organizations", {"name": "Beta", "tax_id": "30-1",
                                                               "domains": "beta.example, beta2.example"})
    assert status == 200 and "beta.example, beta2.example" in page
    [org] = await running.service.organizations.search("Beta")
    number = await _email(running, "y@beta2.example", "<m2@beta2.example>")
    status, page = await agent.get(f"/console/organizations/{org['id']}")
    assert status == 200 and "1 open case" in page and f'data-case="{number}"' in page
    status, page = await agent.get("/console/organizations")
    assert f'data-organization="{org["id"]}"' in page
    status, page = await agent.post(f"/console/organizations/{org['id']}", {"name": "", "domains": ""})
    assert status == 422
