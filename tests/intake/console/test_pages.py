"""The agents' pages over real HTTP on both databases: what they show, what their forms
do through CaseService, how they refuse bad input, and the live event stream."""

from __future__ import annotations

import asyncio
import json
import re

from sqlalchemy import select

from posventa.core.domain import AttachmentRef, ChannelName, InboundMessage
from posventa.core.persistence.schema import outbox
from tests.intake.console.harness import SQLITE_ONLY, ConsoleClient

XSS_TITLE = '<img src=x onerror="window.__pwned=1">Impresora'
XSS_BODY = "Hola <script>window.__pwned=1</script> & adiós"


async def _email(running, *, external_id="<m1@example.org>", text=XSS_BODY, subject=XSS_TITLE,
                 attachments=()) -> int:
    receipt = await running.service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=external_id, sender="ana@example.org", sender_name="Ana <b>Pérez</b>",
        text=text, subject=subject, attachments=tuple(attachments)))
    return receipt.case_number


@SQLITE_ONLY
async def test_inbox_and_case_escape_customer_text(running, agent):
    number = await _email(running)
    status, page = await agent.get("/console/inbox")
    assert status == 200
    assert XSS_TITLE not in page and "&lt;img src=x onerror=" in page
    status, page = await agent.get(f"/console/cases/{number}")
    assert status == 200
    assert "<script>window.__pwned" not in page and "&lt;script&gt;window.__pwned=1&lt;/script&gt; &amp; adiós" in page
    assert "<b>Pérez</b>" not in page
    async with agent.http.get(f"{agent.base}/console/cases/{number}") as r:
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"


@SQLITE_ONLY
async def test_inbox_filters_and_counts(running, agent):
    first = await _email(running, external_id="<a@x>", text="La impresora no imprime", subject="Impresora")
    second = await _email(running, external_id="<b@x>", text="Factura duplicada", subject="Factura")
    await running.service.cases.assign(second, "agent1", agent="admin1")
    await running.service.cases.set_type(first, "complaint", agent="admin1")
    status, page = await agent.get("/console/inbox?mine=1")
    assert f'data-case="{second}"' in page and f'data-case="{first}"' not in page
    status, page = await agent.get("/console/inbox?type=complaint")
    assert f'data-case="{first}"' in page and f'data-case="{second}"' not in page
    status, page = await agent.get("/console/inbox?q=factura")
    assert f'data-case="{second}"' in page and f'data-case="{first}"' not in page
    status, page = await agent.get("/console/inbox?channel=telegram")
    assert "No cases match" in page
    # Bad filter values are ignored, not a crash or an injection.
    status, page = await agent.get("/console/inbox?type=%3Cx%3E&category=abc&page=-5&activity=nope")
    assert status == 200 and f'data-case="{first}"' in page
    assert 'data-activity="preliminary_analysis">Preliminary analysis <b>2</b>' in page


async def test_reply_goes_out_on_the_customers_channel(running, agent):
    number = await _email(running, text="¿Cómo cambio el tóner?", subject="Tóner")
    await running.email.wait_for(1)  # the acknowledgement
    # "Answer sent" needs the type: refused before the reply goes out, in the agent's words.
    status, page = await agent.post(f"/console/cases/{number}/reply",
                                    {"text": "Abra la tapa frontal <y> retire el cartucho.", "mark_answered": "1"})
    assert status == 422 and 'id="error-activity"' in page and 'id="error-type"' in page
    assert "Choose the case&#39;s type (Request, Complaint or Incident) before “Answer sent”" in page
    assert len(running.email.sent) == 1 and (await running.service.cases.get_case(number))["type"] == "unclassified"
    assert (await agent.post(f"/console/cases/{number}/type", {"type": "request"}))[0] == 200
    status, page = await agent.post(f"/console/cases/{number}/reply",
                                    {"text": "Abra la tapa frontal <y> retire el cartucho.", "mark_answered": "1"})
    assert status == 200 and "Reply queued" in page and "(email)" in page
    sent = await running.email.wait_for(2)
    reply = sent[-1]
    assert reply.kind == "reply" and reply.recipient == "ana@example.org"
    assert reply.text == "Abra la tapa frontal <y> retire el cartucho." and reply.case_number == number
    case = await running.service.cases.get_case(number)
    assert case["activity"] == "answer_sent"
    # An empty reply is refused next to the box, and nothing is queued.
    status, page = await agent.post(f"/console/cases/{number}/reply", {"text": "   "})
    assert status == 422 and 'id="error-text"' in page and "text is required" in page


async def test_properties_activity_and_errors_next_to_the_field(running, agent):
    number = await _email(running, text="Se rompió", subject="Roto")
    cat = await running.service.cases.create_category("Hardware")
    sub = await running.service.cases.create_category("Impresoras", parent_id=cat["id"])
    other = await running.service.cases.create_category("Software")
    assert (await agent.post(f"/console/cases/{number}/type", {"type": "incident"}))[0] == 200
    status, page = await agent.post(f"/console/cases/{number}/category",
                                    {"category_id": str(other["id"]), "subcategory_id": str(sub["id"])})
    assert status == 422 and 'id="error-subcategory_id"' in page
    assert (await agent.post(f"/console/cases/{number}/category",
                             {"category_id": str(cat["id"]), "subcategory_id": str(sub["id"])}))[0] == 200
    assert (await agent.post(f"/console/cases/{number}/assign", {"to": "me"}))[0] == 200
    # Deriving without a sector: the workflow refuses, and says so next to the activity.
    status, page = await agent.post(f"/console/cases/{number}/activity", {"activity": "derived", "sector": ""})
    assert status == 422 and 'id="error-activity"' in page and "needs a sector" in page
    status, page = await agent.post(f"/console/cases/{number}/activity", {"activity": "derived", "sector": "Taller"})
    assert status == 200 and "Activity changed" in page
    assert (await agent.post(f"/console/cases/{number}/note", {"note": "Llamar el lunes"}))[0] == 200
    case = await running.service.cases.get_case(number)
    assert (case["type"], case["category"]["id"], case["subcategory"]["id"]) == ("incident", cat["id"], sub["id"])
    assert (case["assigned_agent"], case["activity"], case["sector"]) == ("agent1", "derived", "Taller")
    assert [m["text"] for m in case["messages"] if m["author"] == "note"] == ["Llamar el lunes"]
    status, page = await agent.get(f"/console/cases/{number}?tab=history")
    assert "agent:agent1" in page and "Derived to a sector" in page
    status, page = await agent.post(f"/console/cases/{number}/activity", {"activity": "closed"})
    assert status == 200 and "Activity changed" in page
    status, page = await agent.post(f"/console/cases/{number}/activity", {"activity": "derived", "sector": "X"})
    assert status == 422 and "the case is closed" in page


async def test_closing_an_unclassified_case_is_refused_until_it_has_a_type(running, agent):
    number = await _email(running, text="No anda el lector", subject="Lector")
    status, page = await agent.get(f"/console/cases/{number}")
    assert 'id="type-select"' in page and "Unclassified: choose" in page and 'value="unclassified"' not in page
    status, page = await agent.post(f"/console/cases/{number}/activity", {"activity": "closed"})
    assert status == 422 and "Choose the case&#39;s type (Request, Complaint or Incident) before “Closed”" in page
    assert "Required: the case has no type yet." in page
    assert (await running.service.cases.get_case(number))["activity"] == "preliminary_analysis"
    # Nor can the agent set it back to unclassified by hand.
    status, page = await agent.post(f"/console/cases/{number}/type", {"type": "unclassified"})
    assert status == 422 and 'id="error-type"' in page
    assert (await agent.post(f"/console/cases/{number}/type", {"type": "incident"}))[0] == 200
    status, page = await agent.post(f"/console/cases/{number}/activity", {"activity": "closed"})
    assert status == 200 and (await running.service.cases.get_case(number))["activity"] == "closed"


@SQLITE_ONLY
async def test_kb_tab_fields_copy_description_and_actions(running, agent):
    number = await _email(running, text="El equipo muestra error 42", subject="Error 42")
    status, page = await agent.post(f"/console/cases/{number}/kb/action", {"action": "publish"})
    assert status == 422 and 'id="error-answer"' in page  # publishing needs an answer first
    status, _ = await agent.post(f"/console/cases/{number}/kb", {"copy_description": "1", "answer": "Reiniciar.",
                                                                 "hotfix": "", "application": "Impresora X"})
    assert status == 200
    case = await running.service.cases.get_case(number)
    assert case["kb"]["problem"] == case["description"] and case["kb"]["answer"] == "Reiniciar."
    status, page = await agent.post(f"/console/cases/{number}/kb/action", {"action": "link", "url": "javascript:alert(1)"})
    assert status == 422 and 'id="error-url"' in page
    status, page = await agent.post(f"/console/cases/{number}/kb/action", {"action": "publish"})
    assert status == 200 and "Publication queued" in page
    async with running.service.db.engine.connect() as conn:
        items = (await conn.execute(select(outbox).where(outbox.c.kind == "kb_publish"))).all()
    assert [(i.channel, i.case_id) for i in items] == [("kb", number)]
    status, _ = await agent.post(f"/console/cases/{number}/kb/action",
                                 {"action": "link", "url": "https://kb.example.com/t/error-42/7"})
    status, page = await agent.get(f"/console/cases/{number}?tab=kb")
    assert 'id="kb-view-publication"' in page and "https://kb.example.com/t/error-42/7" in page


@SQLITE_ONLY
async def test_budget_tab_follows_the_mode(running, agent):
    from sqlalchemy import insert

    from posventa.core.persistence.schema import products

    async with running.service.db.transaction() as conn:
        await conn.execute(insert(products), [{"code": "TON", "name": "Tóner"}, {"code": "ROD", "name": "Rodillo"}])
    number = await _email(running, text="Presupuesto de repuestos", subject="Presupuesto")
    status, page = await agent.get(f"/console/cases/{number}?tab=budget")
    assert 'id="budget-not-used"' in page  # the process does not use budgets (the default)
    status, page = await agent.post(f"/console/cases/{number}/budget", {
        "budget_mode": "products_with_amounts", "product_0": "TON", "quantity_0": "2", "unit_amount_0": "abc",
        "product_1": "", "product_2": "ROD", "quantity_2": "1", "unit_amount_2": "10"})
    assert status == 422 and 'id="error-unit_amount_0"' in page
    status, page = await agent.post(f"/console/cases/{number}/budget", {
        "budget_mode": "products_with_amounts", "product_0": "TON", "quantity_0": "2", "unit_amount_0": "12.50",
        "product_2": "ROD", "quantity_2": "1", "unit_amount_2": "10"})
    assert status == 200 and 'id="budget-total">$35,00<' in page
    status, _ = await agent.post(f"/console/cases/{number}/budget", {"budget_mode": "products_only",
                                                                     "product_0": "TON"})
    case = await running.service.cases.get_case(number)
    assert case["budget_mode"] == "products_only" and case["budget_mode_source"] == "case"
    assert case["budget_lines"] == [{"product": "TON", "quantity": None, "unit_amount": None}]


@SQLITE_ONLY
async def test_attachments_download_through_an_authenticated_route(running, agent):
    html = await running.service.attachments.put(b"<script>alert(1)</script>", filename="evil.html",
                                                 content_type="text/html")
    png = await running.service.attachments.put(b"\x89PNG\r\n\x1a\nfake", filename="foto.png", content_type="image/png")
    number = await _email(running, text="adjunto", subject="Adjuntos", attachments=(html, png))
    case = await running.service.cases.get_case(number)
    atts = {a["filename"]: a["id"] for m in case["messages"] for a in m["attachments"]}
    status, page = await agent.get(f"/console/cases/{number}")
    assert f'/console/attachments/{atts["evil.html"]}' in page
    async with agent.http.get(f"{agent.base}/console/attachments/{atts['evil.html']}") as r:
        assert r.status == 200 and await r.read() == b"<script>alert(1)</script>"
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["Content-Disposition"].startswith("attachment;")
        assert "sandbox" in r.headers["Content-Security-Policy"]
    async with agent.http.get(f"{agent.base}/console/attachments/{atts['foto.png']}") as r:
        assert r.headers["Content-Type"] == "image/png" and r.headers["Content-Disposition"].startswith("inline;")
    # The download link: the file's real type, as an attachment, never sniffed.
    async with agent.http.get(f"{agent.base}/console/attachments/{atts['foto.png']}?download=1") as r:
        assert r.headers["Content-Type"] == "image/png" and r.headers["Content-Disposition"].startswith("attachment;")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert (await agent.get("/console/attachments/999999"))[0] == 404
    async with ConsoleClient(running.base) as anonymous:
        async with anonymous.http.get(f"{running.base}/console/attachments/{atts['foto.png']}",
                                      allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/console/login")
    missing = AttachmentRef(filename="gone.txt", content_type="text/plain", size=3, sha256="0" * 64)
    gone = await _email(running, external_id="<gone@x>", text="x", subject="x", attachments=(missing,))
    att = (await running.service.cases.get_case(gone))["messages"][0]["attachments"][0]
    assert (await agent.get(f"/console/attachments/{att['id']}"))[0] == 404


async def test_live_events_announce_new_messages(running, agent):
    async with agent.http.get(f"{agent.base}/console/events", headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        while (await stream.content.readline()).strip() != b": connected":
            pass
        number = await _email(running, text="Otra consulta", subject="Nueva")

        async def next_event() -> dict:
            while True:
                line = (await stream.content.readline()).decode()
                if line.startswith("data: "):
                    return json.loads(line[6:])

        event = await asyncio.wait_for(next_event(), 5)
        assert event["case"] == number and event["channel"] == "email" and event["new_case"] is True
        assert "text" not in event  # the page fetches server-rendered HTML, never raw text
    # The fragment the page fetches is the same escaped HTML.
    status, fragment = await agent.get("/console/inbox?partial=1")
    assert status == 200 and fragment.lstrip().startswith("<table") and f'data-case="{number}"' in fragment


@SQLITE_ONLY
async def test_new_case_by_hand(running, agent):
    status, page = await agent.post("/console/cases/new", {"title": "", "description": "x", "contact_name": "Leo"})
    assert status == 422 and 'id="error-title"' in page
    # The type is mandatory, as in the seeds.
    status, page = await agent.post("/console/cases/new", {"title": "Llamó", "description": "No anda",
                                                           "contact_name": "Leo"})
    assert status == 422 and 'id="error-type"' in page and "type is required" in page
    status, page = await agent.post("/console/cases/new", {"title": "Llamó", "description": "No anda",
                                                           "contact_email": "not-an-email", "type": "request"})
    assert status == 422 and 'id="error-contact-email"' in page
    status, page = await agent.post("/console/cases/new", {"title": "Llamó por teléfono", "description": "No anda",
                                                           "contact_email": "leo@example.org", "type": "request"})
    assert status == 200 and "Case created" in page and "Llamó por teléfono" in page


async def _deliveries(running, number: int, *, settled: tuple[str, ...]) -> list[dict]:
    """The case's outgoing deliveries once each is in one of ``settled`` (the outbox
    worker records outcomes in the background)."""
    async def wait() -> list[dict]:
        while True:
            case = await running.service.cases.get_case(number)
            out = [m["delivery"] for m in case["messages"] if m["delivery"]]
            if out and all(d["state"] in settled for d in out):
                return out
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(wait(), 5)


@SQLITE_ONLY
async def test_case_page_shows_each_deliverys_state(running, agent):
    from posventa.core.errors import PermanentDeliveryError, TransientDeliveryError

    relay = "relay 127.0.0.1:25 ([email.outbound])"
    # The acknowledgement meets a relay that says "later": it waits, with the time of its next attempt.
    running.email.failures.append(TransientDeliveryError(f"{relay} deferred: 451 greylisted", retry_after=3600))
    number = await _email(running, text="¿Llegó mi pedido?", subject="Pedido")
    [ack] = await _deliveries(running, number, settled=("retrying",))
    status, page = await agent.get(f"/console/cases/{number}")
    assert status == 200
    assert 'data-delivery="retrying"' in page and "next attempt" in page
    assert f'<time datetime="{ack["next_attempt_at"]}">' in page and f"{relay} deferred: 451 greylisted" in page
    # A reply the relay refuses for good: failed, naming the relay and its config section, once.
    running.email.failures.append(PermanentDeliveryError(f"{relay} refused: 550 no such user"))
    await agent.post(f"/console/cases/{number}/reply", {"text": "Sí, ayer."})
    await _deliveries(running, number, settled=("retrying", "failed"))
    status, page = await agent.get(f"/console/cases/{number}")
    assert 'data-delivery="failed"' in page and f"{relay} refused: 550 no such user" in page
    assert page.count("550 no such user") == 1 and "author-note" not in page
    status, page = await agent.get(f"/console/cases/{number}?tab=history")
    assert page.count("550 no such user") == 1 and "Delivery failed" in page


@SQLITE_ONLY
async def test_inbox_names_the_customer_or_their_address(running, agent):
    inbox = running.service.inbox
    # A mail without a display name (swaks' default), one with, and a web chat visitor who gave nothing.
    bare = (await inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id="<bare@x>",
                                               sender="ana@cliente.com", text="No llegó", subject="Pedido"))).case_number
    named = (await inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id="<named@x>",
                                                sender="bea@cliente.com", sender_name="Bea Gómez", text="Hola",
                                                subject="Factura"))).case_number
    chat = (await inbox.receive(InboundMessage(channel=ChannelName.WEBCHAT, external_id="s1:1", sender="s1",
                                               text="¿Hay alguien?"))).case_number
    status, page = await agent.get("/console/inbox")
    assert status == 200

    def customer_cell(number: int) -> str:
        row = page.split(f'<tr data-case="{number}">', 1)[1].split("</tr>", 1)[0]
        cell = row.split('<td class="customer">', 1)[1].split("</td>", 1)[0]
        # The name links to the contact's page; the text inside the link is what we check.
        assert 'href="/console/contacts/' in cell
        return re.sub(r'</?a\b[^>]*>', "", cell)

    assert customer_cell(bare) == "ana@cliente.com"
    assert customer_cell(named) == "Bea Gómez"
    assert customer_cell(chat) == '<span class="muted">Web chat visitor</span>'
    listed = {c["number"]: c["customer"] for c in await running.service.cases.list_cases()}
    assert listed == {bare: "ana@cliente.com", named: "Bea Gómez", chat: None}


async def test_live_events_announce_a_replys_delivery_state(running, agent):
    """An open case page hears when a reply is sent or fails (on PostgreSQL through
    LISTEN/NOTIFY, as with several processes), and refreshes its thread."""
    from posventa.core.errors import PermanentDeliveryError

    async with agent.http.get(f"{agent.base}/console/events", headers={"Accept": "text/event-stream"}) as stream:
        while (await stream.content.readline()).strip() != b": connected":
            pass

        async def delivery_event(number: int) -> dict:
            while True:
                line = (await stream.content.readline()).decode()
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event["case"] == number and "delivery" in event:
                        return event

        number = await _email(running, external_id="<live-d@x>", text="¿Y mi pedido?", subject="Pedido")
        sent = await asyncio.wait_for(delivery_event(number), 5)  # the acknowledgement
        assert sent["delivery"] == "sent" and sent["channel"] == "outbox" and "text" not in sent
        running.email.failures.append(PermanentDeliveryError("relay 127.0.0.1:25 ([email.outbound]) refused: 550"))
        reply = await running.service.cases.reply(number, "Ya salió", agent="agent1")
        failed = await asyncio.wait_for(delivery_event(number), 5)
        assert failed["delivery"] == "failed"
    case = await running.service.cases.get_case(number)
    [replied] = [m for m in case["messages"] if m["id"] == failed["message_id"]]
    assert replied["text"] == "Ya salió" and replied["delivery"]["state"] == "failed" and reply["channel"] == "email"
