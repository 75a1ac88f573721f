"""Collision warnings in headless Chromium (issue 21): two agents in two browser contexts
on one case. The second agent's tab shows the first one there and typing, live; the
first agent's reply, written before the customer's newest message, asks for a
confirmation before it goes out; closing the tab takes the agent off the list at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from posventa.core.cases import NewCase
from posventa.core.domain import ChannelName, InboundMessage, ThreadHints
from posventa.core.persistence import Database, upgrade
from posventa.service import Service
from tests.browser import chromium_browser, collect_page_errors, save_screenshot
from tests.intake.console.harness import PASSWORD, Running, start_console
from tests.support import make_config

#: Waits are on events; their limit is generous for a shared, busy machine.
WAIT_MS = 15_000


@pytest.fixture
async def running(tmp_path) -> AsyncIterator[Running]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"
    db = Database(url)
    await upgrade(db)
    await db.dispose()
    service = Service(make_config(url, tmp_path))
    run = await start_console(service)
    await service.console.users.create("agent2", PASSWORD, role="agent", display_name="Bea Two")
    try:
        yield run
    finally:
        await service.stop()


async def logged_in(browser, running: Running, username: str, locale: str = "en-US"):
    context = await browser.new_context(locale=locale, viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto(f"{running.base}/console/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/inbox")
    return page


async def test_a_second_agents_tab_shows_the_first_typing_and_a_stale_reply_asks_first(running):
    from playwright.async_api import expect

    service = running.service
    case = await service.cases.create_case(NewCase(case_type="request", title="Impresora rota", description="No imprime",
                                                   contact_name="Ana Pérez", contact_email="ana@cliente.com"),
                                           actor="agent:agent1")
    number = case["number"]
    async with chromium_browser() as browser:
        ana = await logged_in(browser, running, running.users["agent"])
        bea = await logged_in(browser, running, "agent2", locale="es-ES")  # Bea reads the console in Spanish
        errors = {"ana": collect_page_errors(ana), "bea": collect_page_errors(bea)}
        await ana.goto(f"{running.base}/console/cases/{number}")
        await expect(ana.locator(".live-status.on")).to_be_visible(timeout=WAIT_MS)
        await bea.goto(f"{running.base}/console/cases/{number}")
        await expect(bea.locator(".live-status.on")).to_be_visible(timeout=WAIT_MS)
        # Each sees the other on the case, live (Ana's page was open before Bea came).
        await expect(bea.locator('#case-presence .viewer[data-username="agent1"]')).to_have_text("Agent One",
                                                                                              timeout=WAIT_MS)
        await expect(ana.locator('#case-presence .viewer[data-username="agent2"]')).to_have_text("Bea Two", timeout=WAIT_MS)

        # Ana types: Bea's tab says so, in Spanish; when Ana pauses, it stops saying so.
        await ana.locator("#reply-text").press_sequentially("Probá reiniciarla", delay=20)
        typing = bea.locator('#case-presence .viewer.typing[data-username="agent1"]')
        await expect(typing).to_contain_text("está escribiendo una respuesta", timeout=WAIT_MS)
        await save_screenshot(bea, "console-collision-typing")
        await expect(typing).to_have_count(0, timeout=20_000)
        await expect(bea.locator('#case-presence .viewer[data-username="agent1"]')).to_have_text("Agent One",
                                                                                              timeout=WAIT_MS)

        # The customer writes while Ana's reply waits in the box: sending asks first.
        await service.inbox.receive(InboundMessage(
            channel=ChannelName.EMAIL, external_id="<late@cliente.com>", sender="ana@cliente.com",
            subject="Re: Impresora rota", text="Ya funciona, gracias", thread=ThreadHints(case_number=number)))
        await expect(ana.locator("#thread")).to_contain_text("Ya funciona, gracias", timeout=WAIT_MS)
        await ana.click("#send-reply")
        await expect(ana.locator("#stale-reply")).to_contain_text("A new message arrived while you were writing.",
                                                                  timeout=WAIT_MS)
        assert await ana.input_value("#reply-text") == "Probá reiniciarla"
        await expect(ana.locator("#thread .msg.newer")).to_contain_text("Ya funciona, gracias", timeout=WAIT_MS)
        await expect(ana.locator("#send-reply")).to_have_text("Send anyway", timeout=WAIT_MS)
        await save_screenshot(ana, "console-collision-stale", full_page=True)
        assert [m for m in running.email.sent if m.kind == "reply"] == []
        await ana.click("#send-reply")
        await expect(ana.locator("#notice")).to_be_visible(timeout=WAIT_MS)
        [sent] = [m for m in await running.email.wait_for(1) if m.kind == "reply"]
        assert sent.text == "Probá reiniciarla"

        # Ana closes her tab: she leaves Bea's list without waiting for the server to notice.
        ana_on_beas_page = bea.locator('#case-presence .viewer[data-username="agent1"]')
        await expect(ana_on_beas_page).to_have_count(1, timeout=WAIT_MS)
        await ana.close(run_before_unload=True)
        await expect(ana_on_beas_page).to_have_count(0, timeout=WAIT_MS)
        assert errors == {"ana": [], "bea": []}
