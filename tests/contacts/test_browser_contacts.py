"""The contact pages in headless Chromium: from a case to its contact, an identity added
by hand, and the organization's open cases."""

from __future__ import annotations

from core.domain import ChannelName, InboundMessage
from tests.browser import chromium_browser, collect_page_errors, save_screenshot
from tests.intake.console.harness import PASSWORD, SQLITE_ONLY


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
