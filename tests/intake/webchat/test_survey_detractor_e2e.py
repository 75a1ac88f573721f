"""A web chat survey closes the loop, in real headless Chromium on both databases: the
customer presses "1" in the widget, a complaint case opens (once), a second bad answer
joins it, the widget says someone will contact them; a manager sees the case in the
console's detractors view, an agent closes it there, and the view shows it closed.

Waits are for DOM states (Playwright's ``expect``) or rows, never fixed sleeps."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from posventa.core.persistence.schema import cases, webchat_sessions
from posventa.service import Service
from tests.browser import chromium_context, collect_page_errors, save_screenshot
from tests.intake.console.harness import PASSWORD
from tests.support import make_config

try:
    from playwright.async_api import expect
except ImportError:  # chromium_context skips (or fails under POSVENTA_REQUIRE_ALL) with the reason
    expect = None

pytestmark = pytest.mark.browser

CATALOG = b"""
[[questions]]
code = "attention"
scale = "1-5"
text = { es = "Como te atendieron?", pt = "Como foi?", en = "How was it?" }
weights = [-100, -50, 0, 50, 100]

[[questions]]
code = "working"
scale = "yes/no"
text = { es = "Funciona el equipo?", pt = "Funciona?", en = "Working?" }
weights = { yes = 100, no = -100 }

[[rules]]
name = "Entrega"
start_after_days = 0
expires_after_days = 7
questions = ["attention", "working"]
operators = ["ana"]

[[profiles]]
name = "Equipos"
rules = ["Entrega"]

[[products]]
code = "PRN"
name = "Impresora"
profile = "Equipos"
"""


@pytest.fixture
async def service(database_url, tmp_path):
    config = make_config(database_url, tmp_path, webchat={"enabled": True},
                         surveys={"enabled": True, "tick_seconds": 3600})
    running = Service(config)
    await running.start()
    try:
        await running.surveys.catalog.import_toml(CATALOG)
        await running.console.users.create("gerente", PASSWORD, role="manager", display_name="Gerente")
        yield running
    finally:
        await running.stop()


async def test_a_web_chat_detractor_opens_a_case_and_the_console_follows_it_to_closed(service):
    base = f"http://127.0.0.1:{service.http.bound_port}"
    async with chromium_context() as context:
        chat = context.pages[0] if context.pages else await context.new_page()
        errors = collect_page_errors(chat)
        await chat.goto(f"{base}/chat/")
        await chat.locator(".pvc-bubble").click()
        await expect(chat.locator(".pvc-state")).to_have_attribute("data-state", "online")
        async with service.db.engine.connect() as conn:
            public_id = (await conn.execute(select(webchat_sessions.c.public_id))).scalar_one()

        # The ERP reports a sale to this web chat customer; the survey opens today.
        today = datetime.now(service.surveys.tz).date().isoformat()
        [result], errors_ = await service.surveys.sales.record_many([{
            "external_id": "W-1", "product": "PRN", "seller": "marta", "closed_at": today,
            "customer": {"name": "Ana", "webchat_session": public_id, "language": "es"}}])
        assert errors_ == [] and result.instances == 1
        await service.surveys.scheduler.tick()  # (serve's own ticker may open it first)

        question = chat.locator(".pvc-from-bot").filter(has_text="Como te atendieron?")
        await expect(question).to_have_count(1)
        await question.get_by_role("button", name="1", exact=True).click()
        second = chat.locator(".pvc-from-bot").filter(has_text="Funciona el equipo?")
        await expect(second).to_have_count(1)
        await second.get_by_role("button", name="No", exact=True).click()
        await expect(chat.locator(".pvc-from-bot").last).to_contain_text(
            "alguien de nuestro equipo se va a contactar contigo")
        await save_screenshot(chat, "webchat-survey-detractor")

        async with service.db.engine.connect() as conn:
            [case] = (await conn.execute(select(cases.c.id, cases.c.case_type, cases.c.origin, cases.c.channel)
                                         .where(cases.c.survey_instance_id.isnot(None)))).all()
        assert (case.case_type, case.origin, case.channel) == ("complaint", "survey", "webchat")
        number = case.id
        detail = await service.cases.get_case(number)
        assert "Como te atendieron? → 1 (weight -100) ⚠ detractor" in detail["description"]
        assert "Funciona el equipo? → no (weight -100) ⚠ detractor" in detail["description"]

        # --- the manager's console ---------------------------------------------------------------
        console = await context.new_page()
        console_errors = collect_page_errors(console)
        await console.goto(f"{base}/console/panel/detractors")
        await console.fill("input[name=username]", "gerente")
        await console.fill("input[name=password]", PASSWORD)
        await console.click("button[type=submit]")
        await console.wait_for_url("**/console/panel/detractors")
        row = console.locator(f'#detractor-items tr[data-case="{number}"]')
        await expect(row).to_have_attribute("data-state", "open")
        await expect(row).to_contain_text("W-1")
        await expect(console.locator('#seller-detractors tr[data-seller="marta"]')).to_contain_text("1")
        await save_screenshot(console, "console-detractors-open")

        # The case page says where it came from; the agent closes it there.
        await row.get_by_role("link", name=f"#{number}").click()
        await expect(console.locator("#case-survey")).to_contain_text("W-1")
        await console.goto(f"{base}/console/cases/{number}?tab=history")
        await console.select_option("#activity-select", "closed")
        await console.click("#activity-form button[type=submit]")
        # This browser asks for es-ES (the customer's), so the translated console answers in Spanish.
        await expect(console.locator("#activity-form")).to_contain_text("El caso está cerrado.")

        await console.goto(f"{base}/console/panel/detractors")
        await expect(console.locator(f'#detractor-items tr[data-case="{number}"]')).to_have_attribute(
            "data-state", "closed")
        await console.goto(f"{base}/console/panel/detractors?state=open")
        await expect(console.locator("#detractor-items tr[data-case]")).to_have_count(0)
        await save_screenshot(console, "console-detractors-closed")
        assert errors == [] and console_errors == []
        assert await chat.evaluate("window.__pwned") is None
