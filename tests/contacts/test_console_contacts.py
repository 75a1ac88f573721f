"""The contact and organization pages over real HTTP on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, update

from posventa.core.contacts.privacy import ERASED_TEXT
from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.persistence.schema import cases, messages, outbox
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
    # The history in the reader's language: the sentence, the channel and the fields' names.
    status, page = await agent.get(f"/console/contacts/{contact_id}", headers={"Accept-Language": "es"})
    history = page.split('id="contact-history"', 1)[1].split("</ul>", 1)[0]
    assert "Identidad agregada — Teléfono: +5491155551234" in history
    assert "Actualizado — cambios: Atributos, Idioma, Nombre, Notas, Organización" in history
    assert "changed" not in history and "Phone" not in history

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
    from posventa.intake.webchat.sessions import SessionStore

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
    # Both contacts' history says what the merge did, in the reader's language.
    status, page = await agent.get(f"/console/contacts/{mailer}", headers={"Accept-Language": "es"})
    moved = (await service.contacts.get(mailer))["history"][-1]["values"]["messages"]
    assert (f"Fusionado — absorbió el contacto #{visitor}; movidos identidades: 1, casos: 1, mensajes: {moved}, "
            "ventas: 0, encuestas: 0, sesiones de chat web: 1, entradas del historial: 0") in page
    status, page = await agent.get(f"/console/contacts/{visitor}", headers={"Accept-Language": "pt-BR"})
    assert f"Mesclado em outro contato — mesclado no contato #{mailer}" in page
    status, page = await agent.post(f"/console/contacts/{mailer}/merge", {"source": str(visitor)})
    assert status == 422 and "already merged" in page
    status, page = await agent.post(f"/console/contacts/{mailer}/merge", {"source": str(mailer)})
    assert status == 422 and "into itself" in page

    # A reply still waiting to go out (next attempt far ahead, so the outbox does not
    # send it first): the erasure fails it, saying why.
    async with service.db.transaction() as conn:
        reply = (await conn.execute(insert(messages).values(
            case_id=number, contact_id=mailer, channel="email", direction="out", author="agent",
            text="Ana, su pedido sale mañana", created_at=datetime.now(UTC)).returning(messages.c.id))).scalar_one()
        await conn.execute(insert(outbox).values(
            channel="email", recipient="ana@cliente.example", kind="reply", status="queued", attempts=0,
            max_attempts=3, next_attempt_at=datetime.now(UTC) + timedelta(days=30), case_id=number,
            message_id=reply, payload={"text": "Ana, su pedido sale mañana"}, created_at=datetime.now(UTC)))
    # A customer who types erasure's words is shown them as typed, even in Spanish.
    typed = await _email(running, "luis@otro.example", "<t1@otro.example>", name="Luis")
    async with service.db.transaction() as conn:
        await conn.execute(update(cases).where(cases.c.id == typed).values(title=ERASED_TEXT))

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
        # A Spanish reader sees the erased contact's name, and its history, in Spanish:
        # the contact page's title and heading, the case page, the inbox.
        status, page = await admin.get(f"/console/contacts/{mailer}", headers={"Accept-Language": "es"})
        assert f"<title>contacto borrado #{mailer} ·" in page
        assert f'<span id="contact-name">contacto borrado #{mailer}</span>' in page
        history = page.split('id="contact-history"', 1)[1].split("</ul>", 1)[0]
        assert "Borrado — casos: 2, mensajes: " in history and "erased contact" not in page
        assert "absorbió" not in history  # what earlier entries said went with the person
        cases_of_contact = page.split('id="contact-cases"', 1)[1].split("</table>", 1)[0]
        assert cases_of_contact.count("[borrado a pedido del cliente]</a>") == 2
        status, page = await admin.get(f"/console/cases/{number}", headers={"Accept-Language": "es"})
        assert f'href="/console/contacts/{mailer}">contacto borrado #{mailer}</a>' in page
        assert "erased contact" not in page
        # What erasure left in the case's texts and its undelivered reply, in Spanish too.
        assert f"<title>#{number} [borrado a pedido del cliente] ·" in page
        assert '<span id="case-title">[borrado a pedido del cliente]</span>' in page
        assert '<div class="body" id="case-description">[borrado a pedido del cliente]</div>' in page
        thread = page.split('<ol class="thread"', 1)[1].split("</ol>", 1)[0]
        bodies = thread.count('<div class="body">')
        assert bodies >= 2 and thread.count('<div class="body">[borrado a pedido del cliente]</div>') == bodies
        assert '<span class="delivery-error">borrado a pedido del cliente</span>' in page
        assert "erased at the customer" not in page
        status, page = await admin.get(f"/console/cases/{number}/thread", headers={"Accept-Language": "pt-BR"})
        assert status == 200 and '<div class="body">[apagado a pedido do cliente]</div>' in page
        assert "erased at the customer" not in page
        status, page = await admin.get("/console/inbox", headers={"Accept-Language": "es"})
        assert f'href="/console/contacts/{mailer}">contacto borrado #{mailer}</a>' in page
        assert "erased contact" not in page
        assert f'<a href="/console/cases/{number}">[borrado a pedido del cliente]</a>' in page
        typed_title = ERASED_TEXT.replace("'", "&#39;")  # as typed, escaped
        assert f'<a href="/console/cases/{typed}">{typed_title}</a>' in page
        status, page = await admin.get(f"/console/contacts/{mailer}", headers={"Accept-Language": "pt-BR"})
        assert f'<span id="contact-name">contato apagado #{mailer}</span>' in page
    case = await service.cases.get_case(chat.case_number)
    assert all("Hola por chat" not in m["text"] for m in case["messages"])


async def test_contact_list_by_organization_and_organization_merge(running, agent):
    service = running.service
    acme = await service.organizations.create({"name": "Acme", "domains": ["acme.example"]}, actor="test")
    beta = await service.organizations.create({"name": "Acme SA", "domains": ["acme-sa.example"]}, actor="test")
    in_acme = await _email(running, "ana@acme.example", "<o1@acme.example>", name="Ana Uno")
    in_beta = await _email(running, "ana@acme-sa.example", "<o2@acme-sa.example>", name="Ana Dos")
    ana_acme = (await service.cases.get_case(in_acme))["contact"]["id"]
    ana_beta = (await service.cases.get_case(in_beta))["contact"]["id"]

    status, page = await agent.get(f"/console/contacts?q=ana&organization={acme['id']}")
    assert status == 200 and f'data-contact="{ana_acme}"' in page and f'data-contact="{ana_beta}"' not in page
    assert f'<option value="{acme["id"]}" selected>' in page
    status, page = await agent.get("/console/contacts?q=ana")
    assert f'data-contact="{ana_acme}"' in page and f'data-contact="{ana_beta}"' in page

    # Acme absorbs "Acme SA": its contact, its case and its domain move.
    status, page = await agent.get(f"/console/organizations/{acme['id']}")
    assert status == 200 and 'id="organization-merge"' in page
    status, page = await agent.post(f"/console/organizations/{acme['id']}/merge", {"source": str(acme["id"])})
    assert status == 422 and 'id="error-source"' in page and "into itself" in page
    status, page = await agent.post(f"/console/organizations/{acme['id']}/merge", {"source": str(beta["id"])})
    assert status == 200 and "Organizations merged" in page
    assert f'data-contact="{ana_beta}"' in page and f'data-case="{in_beta}"' in page and "acme-sa.example" in page
    assert "2 open cases" in page
    status, page = await agent.post(f"/console/organizations/{acme['id']}/merge", {"source": str(beta["id"])})
    assert status == 422 and "already merged" in page
    status, page = await agent.get(f"/console/organizations/{beta['id']}")
    assert status == 200 and 'id="merged-into"' in page and 'id="organization-form"' not in page
    status, _ = await agent.post("/console/organizations/999999/merge", {"source": str(beta["id"])})
    assert status == 404


async def test_new_case_for_an_existing_contact_or_a_new_one(running, agent):
    service = running.service
    acme = await service.organizations.create({"name": "Acme", "domains": ["acme.example"]}, actor="test")
    first = await _email(running, "x@acme.example", "<n1@acme.example>", name="Xavier Pérez")
    xavier = (await service.cases.get_case(first))["contact"]["id"]
    form = {"title": "Llamó", "description": "Sigue sin andar", "type": "request"}

    # From the contact's page: the form is for that contact.
    status, page = await agent.get(f"/console/contacts/{xavier}")
    assert f'href="/console/cases/new?contact_id={xavier}"' in page
    status, page = await agent.get(f"/console/cases/new?contact_id={xavier}")
    assert status == 200 and 'id="chosen-contact"' in page and "Xavier Pérez" in page
    status, page = await agent.post("/console/cases/new", {**form, "contact_id": str(xavier)})
    assert status == 200 and "Case created" in page
    [mine] = [c for c in await service.contacts.cases(xavier) if c["number"] != first]
    assert mine["organization_id"] == acme["id"]

    # Found by a search on the form; nothing is created by searching.
    status, page = await agent.post("/console/cases/new", {**form, "contact_q": "xav", "find": "1"})
    assert status == 200 and f'name="contact_id" value="{xavier}"' in page and 'value="Sigue sin andar"' not in page
    assert "Sigue sin andar" in page  # what was typed stays
    assert len(await service.contacts.cases(xavier)) == 2
    status, page = await agent.post("/console/cases/new", {**form, "contact_q": "", "find": "1"})
    assert status == 422 and 'id="error-contact_q"' in page

    # A new customer in an existing organization, and one in an organization created here.
    status, page = await agent.post("/console/cases/new", {**form, "contact_name": "Zoe Nueva",
                                                           "contact_phone": "+54 9 11 4444-1234",
                                                           "organization_id": str(acme["id"])})
    assert status == 200 and "Case created" in page
    [zoe] = await service.contacts.search("zoe")
    assert zoe["organization"]["id"] == acme["id"] and zoe["phone"] == "+5491144441234"
    status, page = await agent.post("/console/cases/new", {**form, "contact_name": "Leo", "organization": "Gamma SRL"})
    assert status == 200 and "Case created" in page
    [leo] = await service.contacts.search("leo")
    assert leo["organization"]["name"] == "Gamma SRL"

    # Bad input names its field.
    status, page = await agent.post("/console/cases/new", {**form, "contact_id": "999999"})
    assert status == 422 and 'id="error-contact_id"' in page
    status, page = await agent.post("/console/cases/new", {**form, "contact_name": "Leo", "organization_id": "999999"})
    assert status == 422 and 'id="error-organization_id"' in page
    status, page = await agent.post("/console/cases/new", {**form, "contact_phone": "12"})
    assert status == 422 and 'id="error-contact-phone"' in page


async def test_the_contact_pages_in_spanish_and_portuguese(running, agent):
    number = await _email(running, "x@cliente.example", "<t1@cliente.example>")
    contact_id = (await running.service.cases.get_case(number))["contact"]["id"]
    for header, words in (("es-AR", ("Casos en todos los canales", "Identidades", "Agregar identidad")),
                          ("pt-BR", ("Casos em todos os canais", "Identidades", "Adicionar identidade"))):
        status, page = await agent.get(f"/console/contacts/{contact_id}", headers={"Accept-Language": header})
        assert status == 200 and all(w in page for w in words), header
        status, page = await agent.get("/console/organizations", headers={"Accept-Language": header})
        assert status == 200 and ("Nueva organización" in page or "Nova organização" in page)
