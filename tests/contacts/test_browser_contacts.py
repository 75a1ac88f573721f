"""The contact pages in headless Chromium: from a case to its contact, an identity added
by hand, and the organization's open cases; a web chat visitor and an email contact merged
from the case page."""

from __future__ import annotations

import re
from email.message import EmailMessage

import aiosmtplib
import pytest

from posventa.core.domain import ChannelName, InboundMessage
from posventa.service import Service
from tests.browser import chromium_browser, collect_page_errors, save_screenshot
from tests.fakes.smtp_sink import SmtpSink
from tests.intake.console.harness import PASSWORD, SQLITE_ONLY, start_console
from tests.support import free_port, make_config

try:
    from playwright.async_api import expect
except ImportError:  # chromium_browser skips (or fails under POSVENTA_REQUIRE_ALL) with the reason
    expect = None

pytestmark = pytest.mark.browser


@SQLITE_ONLY
async def test_from_a_case_to_its_contact_and_organization(running):
    service = running.service
    org = await service.organizations.create({"name": "Acme", "domains": ["acme.example"]}, actor="test")
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id="<b1@acme.example>", sender="x@acme.example", sender_name="Xavier Pérez",
        subject="Factura", text="No llegó la factura"))
    number = receipt.case_number
    async with chromium_browser() as browser:
        page = await browser.new_page()
        page.set_default_timeout(10_000)
        errors = collect_page_errors(page)
        await page.goto(f"{running.base}/console/cases/{number}")
        await page.fill("input[name=username]", running.users["agent"])
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"**/console/cases/{number}")

        await page.click("#case-contact")
        await page.wait_for_selector(f'#contact-cases tr[data-case="{number}"]')
        assert await page.inner_text("#contact-name") == "Xavier Pérez"
        assert await page.inner_text("#contact-organization") == "Acme"

        await page.select_option("#identity-form select[name=kind]", "phone")
        await page.fill("#identity-form input[name=address]", "+55 11 98765-4321")
        await page.click("#identity-form button[type=submit]")
        await page.wait_for_selector("#notice")
        assert "+5511987654321" in await page.inner_text("#identities")
        await save_screenshot(page, "console-contact")

        await page.click("#contact-organization")
        await page.wait_for_url(f"**/console/organizations/{org['id']}")
        assert await page.locator(f'#org-open-cases tr[data-case="{number}"]').count() == 1
        assert "1 open case" in await page.inner_text("#open-case-count")

        await page.click("nav[aria-label=Main] >> text=Contacts")
        await page.fill("#contact-q", "+55 11 98765")
        await page.press("#contact-q", "Enter")
        await page.wait_for_selector("#contact-results tr[data-contact]")
        assert await page.locator("#contact-results tr[data-contact]").count() == 1
        assert errors == []


@pytest.fixture
async def chat_and_mail(database_url, tmp_path):
    """A Service with the web chat (its pre-chat form asks name and email) and mail over
    real SMTP, and console users."""
    async with SmtpSink() as sink:
        config = make_config(database_url, tmp_path, webchat={"enabled": True, "prechat_form": True}, email={
            "enabled": True, "listen_port": free_port(), "domains": ("example.com",),
            "address": "support@example.com", "outbound": {"host": "127.0.0.1", "port": sink.port}})
        service = Service(config)
        running = await start_console(service, record_email=False)
        try:
            yield running
        finally:
            await service.stop()


async def test_a_web_chat_visitor_and_an_email_contact_merged_show_both_cases(chat_and_mail):
    """Issue #19's "done when": Ana chats on the web (typing her address in the pre-chat
    form, which is never trusted as hers) and mails from that address; an agent merges the
    two contacts from the mail's case page, and the contact page shows both cases."""
    running = chat_and_mail
    service = running.service
    async with chromium_browser() as browser:
        # The customer, in the shop's web chat.
        customer = await (await browser.new_context(locale="es-ES")).new_page()
        customer.set_default_timeout(15_000)
        customer_errors = collect_page_errors(customer)
        await customer.goto(f"{running.base}/chat/")
        await customer.locator(".pvc-bubble").click()
        await customer.locator(".pvc-name").fill("Ana Pérez")
        await customer.locator(".pvc-email").fill("ana@cliente.example")
        await customer.locator(".pvc-start").click()
        await expect(customer.locator(".pvc-state")).to_have_attribute("data-state", "online")
        await customer.locator(".pvc-input").fill("Hola, la impresora fiscal no imprime")
        await customer.locator(".pvc-send").click()
        await expect(customer.locator(".pvc-case")).to_contain_text("Caso")
        [chat_case] = await service.cases.list_cases()
        assert chat_case["channel"] == "webchat"

        # The same person by mail, over SMTP: another contact (a verified address).
        message = EmailMessage()
        message["From"], message["To"] = "Ana Pérez <ana@cliente.example>", "support@example.com"
        message["Subject"], message["Message-ID"] = "Factura", "<f1@cliente.example>"
        message.set_content("Además necesito la factura del pedido 1234.")
        _, reply = await aiosmtplib.send(message, hostname="127.0.0.1", port=service.smtp.bound_port, timeout=10)
        mail_case = int(reply.rsplit("#", 1)[1])
        visitor = chat_case["contact_id"]
        mailer = (await service.cases.get_case(mail_case))["contact"]["id"]
        assert visitor != mailer

        # The agent, in English, on the mail's case page: the visitor is offered for a merge.
        agent = await (await browser.new_context(locale="en-US")).new_page()
        agent.set_default_timeout(15_000)
        agent_errors = collect_page_errors(agent)
        await agent.goto(f"{running.base}/console/cases/{mail_case}")
        await agent.fill("input[name=username]", running.users["agent"])
        await agent.fill("input[name=password]", PASSWORD)
        await agent.click("button[type=submit]")
        await agent.wait_for_url(f"**/console/cases/{mail_case}")
        suggestion = agent.locator(f'#case-duplicates li[data-duplicate="{visitor}"]')
        await expect(suggestion).to_contain_text("same email address")
        await suggestion.get_by_role("button", name="Merge into this case's customer").click()
        await expect(agent.locator("#notice")).to_have_text("Contacts merged.")
        await expect(agent.locator("#case-duplicates")).to_have_count(0)

        # The contact page lists both cases, on both channels, and the chat's identity.
        await agent.click("#case-contact")
        await agent.wait_for_url(f"**/console/contacts/{mailer}")
        await expect(agent.locator(f'#contact-cases tr[data-case="{chat_case["number"]}"]')).to_contain_text("Web chat")
        await expect(agent.locator(f'#contact-cases tr[data-case="{mail_case}"]')).to_contain_text("Email")
        await expect(agent.locator("#identities")).to_contain_text("ana@cliente.example")
        await expect(agent.locator("#identities")).to_contain_text("Web chat")
        await expect(agent.locator("#contact-history")).to_contain_text("Merged")
        await save_screenshot(agent, "console-contact-merged")
        # The visitor's old contact page says where it went.
        await agent.goto(f"{running.base}/console/contacts/{visitor}")
        await expect(agent.locator("#merged-into a")).to_have_attribute("href", f"/console/contacts/{mailer}")

        # The customer's chat is untouched by the merge and the agent's reply still reaches it.
        await service.cases.reply(chat_case["number"], "Hola Ana, ya la revisamos.", agent="agent1")
        await expect(customer.locator(".pvc-from-agent .pvc-text")).to_have_text("Hola Ana, ya la revisamos.")

        # An admin whose browser speaks Spanish reads the contact's history in Spanish, erases
        # the contact at the customer's request, and sees it named in Spanish.
        admin = await (await browser.new_context(locale="es-ES")).new_page()
        admin.set_default_timeout(15_000)
        admin_errors = collect_page_errors(admin)
        await admin.goto(f"{running.base}/console/contacts/{mailer}")
        await admin.fill("input[name=username]", running.users["admin"])
        await admin.fill("input[name=password]", PASSWORD)
        await admin.click("button[type=submit]")
        await admin.wait_for_url(f"**/console/contacts/{mailer}")
        await expect(admin.locator("#contact-history")).to_contain_text(
            f"agent:agent1: Fusionado — absorbió el contacto #{visitor}; movidos identidades: 1, casos: 1")
        await admin.fill("#erase-form input[name=confirm]", str(mailer))
        await admin.get_by_role("button", name="Borrar este contacto").click()
        await expect(admin.locator("#notice")).to_have_text("Contacto borrado.")
        await expect(admin.locator("#contact-name")).to_have_text(f"contacto borrado #{mailer}")
        await expect(admin).to_have_title(re.compile(f"^contacto borrado #{mailer} "))
        await expect(admin.locator("#contact-history")).to_contain_text("Borrado — casos: 2, mensajes: ")
        await save_screenshot(admin, "console-contact-erased-es")
        await admin.goto(f"{running.base}/console/cases/{mail_case}")
        await expect(admin.locator("#case-contact")).to_have_text(f"contacto borrado #{mailer}")
        assert customer_errors == [] and agent_errors == [] and admin_errors == []
    merged = await service.contacts.get(mailer)
    assert {c["number"] for c in await service.contacts.cases(mailer)} == {chat_case["number"], mail_case}
    assert any(h["kind"] == "merged" and h["actor"] == "agent:agent1" for h in merged["history"])
