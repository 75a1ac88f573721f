"""The contact and organization pages over real HTTP on both databases."""

from __future__ import annotations

from core.domain import ChannelName, InboundMessage
from tests.intake.console.harness import ConsoleClient


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


async def test_merge_offered_on_the_case_page_and_erase_for_admins(running, agent):
    from intake.webchat.sessions import SessionStore

    service = running.service
    store = SessionStore(db=service.db, clock=service.clock)
    _, session = await store.create(language="es", name="Ana", email="ana@cliente.example")
    chat = await service.inbox.receive(InboundMessage(channel=ChannelName.WEBCHAT, external_id="w-1",
                                                      sender=session.public_id, text="Hola por chat"))
    number = await _email(running, "ana@cliente.example", "<e9@cliente.example>")
    mailer = (await service.cases.get_case(number))["contact"]["id"]
    visitor = (await service.cases.get_case(chat.case_number))["contact"]["id"]

    status, page = await agent.get(f"/console/cases/{number}")
    assert status == 200 and f'data-duplicate="{visitor}"' in page and "Merge into this case" in page
    status, page = await agent.post(f"/console/contacts/{mailer}/merge", {"source": str(visitor),
                                                                         "back": f"/cases/{number}"})
    assert status == 200 and "Contacts merged" in page and f'data-duplicate="{visitor}"' not in page
    status, page = await agent.get(f"/console/contacts/{mailer}")
    assert f'data-case="{number}"' in page and f'data-case="{chat.case_number}"' in page
    status, page = await agent.post(f"/console/contacts/{mailer}/merge", {"source": str(visitor)})
    assert status == 422 and "already merged" in page
    status, page = await agent.post(f"/console/contacts/{mailer}/merge", {"source": str(mailer)})
    assert status == 422 and "into itself" in page

    # Erasure is for admins, confirmed by typing the id.
    assert "erase-form" not in page
    status, _ = await agent.post(f"/console/contacts/{mailer}/erase", {"confirm": str(mailer)})
    assert status == 403
    async with ConsoleClient(running.base) as admin:
        await admin.login(running.users["admin"])
        status, page = await admin.get(f"/console/contacts/{mailer}")
        assert "erase-form" in page and "contact-export" in page
        status, body = await admin.get(f"/console/contacts/{mailer}/export")
        assert status == 200 and "Hola por chat" in body
        status, page = await admin.post(f"/console/contacts/{mailer}/erase", {"confirm": "1"})
        assert status == 422 and "to confirm" in page
        status, page = await admin.post(f"/console/contacts/{mailer}/erase", {"confirm": str(mailer)})
        assert status == 200 and "Contact erased" in page and f"erased contact #{mailer}" in page
    case = await service.cases.get_case(chat.case_number)
    assert all("Hola por chat" not in m["text"] for m in case["messages"])
