"""The agents' daily tools (issue 21) in headless Chromium against a running Service:
the inbox's full-text search, canned responses. One service and one browser per test;
the rules behind each step are tested over plain HTTP and on both databases elsewhere
(tests/core/test_search.py, tests/core/test_macros.py, tests/core/test_api.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from posventa.core.cases import NewCase
from posventa.core.persistence import Database, upgrade
from posventa.service import Service
from tests.browser import chromium_browser, collect_page_errors, save_screenshot
from tests.intake.console.harness import PASSWORD, Running, start_console
from tests.support import make_config


@pytest.fixture
async def running(tmp_path) -> AsyncIterator[Running]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"
    db = Database(url)
    await upgrade(db)
    await db.dispose()
    service = Service(make_config(url, tmp_path))
    run = await start_console(service)
    try:
        yield run
    finally:
        await service.stop()


async def logged_in(browser, running: Running, role: str = "agent", locale: str = "en-US"):
    context = await browser.new_context(locale=locale, viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto(f"{running.base}/console/login")
    await page.fill("input[name=username]", running.users[role])
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/inbox")
    return page


async def test_inbox_search_finds_a_word_only_inside_a_reply(running):
    cases = running.service.cases
    target = await cases.create_case(NewCase(case_type="request", title="Activação do produto", description="Não ativa",
                                             contact_name="Rui", contact_email="rui@cliente.com.br", language="pt"),
                                     actor="agent:ana")
    await cases.reply(target["number"], "Enviamos a sua nova licença por email.", agent="ana")
    other = await cases.create_case(NewCase(case_type="request", title="Factura", description="Duplicada", contact_name="Leo"),
                                    actor="agent:ana")
    async with chromium_browser() as browser:
        page = await logged_in(browser, running)
        errors = collect_page_errors(page)
        await page.wait_for_selector(f'tr[data-case="{other["number"]}"]')
        await page.fill("input[name=q]", "licenca")
        await page.press("input[name=q]", "Enter")
        await page.wait_for_url(lambda url: "q=licenca" in url)
        rows = page.locator("table.cases tbody tr[data-case]")
        assert await rows.count() == 1
        row = page.locator(f'tr[data-case="{target["number"]}"]')
        assert await row.locator("p.match mark").inner_text() == "licença"
        assert await row.locator("p.match").get_attribute("data-source") == "message"
        await save_screenshot(page, "console-search")
        assert errors == []


async def test_an_agent_picks_a_portuguese_macro_for_a_brazilian_customer(running):
    cases = running.service.cases
    case = await cases.create_case(NewCase(case_type="request", title="Licença expirada", description="Não consigo entrar",
                                           contact_name="João Silva", contact_email="joao@cliente.com.br",
                                           language="pt"), actor="agent:ana")
    number = case["number"]
    async with chromium_browser() as browser:
        page = await logged_in(browser, running)
        errors = collect_page_errors(page)
        # The agent writes a personal canned response in the console.
        await page.click("nav[aria-label=Main] >> text=Canned responses")
        await page.fill("#macro-name", "Renovação")
        await page.fill("#macro-body-es", "Hola {{ customer.name }}, renovamos su licencia (caso #{{ case.number }}).")
        await page.fill("#macro-body-pt", "Olá {{ customer.name }}, renovamos a sua licença (caso #{{ case.number }}).")
        await page.click("#macro-form button[type=submit]")
        await page.locator("#macro-list", has_text="Renovação").wait_for()
        await page.goto(f"{running.base}/console/cases/{number}")
        # "/" and a few letters in the reply box find it by name; Enter puts its text in.
        await page.fill("#reply-text", "/reno")
        await page.locator("#macro-suggestions li", has_text="Renovação").wait_for()
        await page.press("#reply-text", "Enter")
        expected = f"Olá João Silva, renovamos a sua licença (caso #{number})."
        assert await page.input_value("#reply-text") == expected
        await page.select_option("#macro-picker", "")
        await page.fill("#reply-text", "")
        # The picker does the same.
        await page.select_option("#macro-picker", label="Renovação (pt)")
        assert await page.input_value("#reply-text") == expected
        await save_screenshot(page, "console-macro")
        await page.click("#reply-form button[type=submit]")
        await page.wait_for_selector("#notice")
        sent = await running.email.wait_for(1)
        [reply] = [m for m in sent if m.kind == "reply"]
        assert reply.text == expected and reply.recipient == "joao@cliente.com.br"
        [macro] = await running.service.macros.list(visible_to=running.users["agent"])
        assert macro["usage_count"] == 1
        assert errors == []


async def test_with_the_profile_language_set_to_spanish_the_console_is_in_spanish(running):
    async with chromium_browser() as browser:
        page = await logged_in(browser, running, locale="pt-BR")  # the browser says Portuguese…
        errors = collect_page_errors(page)
        assert await page.inner_text("nav[aria-label] >> nth=0 >> a >> nth=0") == "Caixa de entrada"
        await page.goto(f"{running.base}/console/profile")
        await page.select_option("#profile-language", "es")  # …the profile says Spanish
        await page.fill("#profile-timezone", "America/Argentina/Buenos_Aires")
        await page.click("#locale-form button[type=submit]")
        await page.wait_for_selector("#locale-saved")
        await page.goto(f"{running.base}/console/inbox")
        nav = page.locator("nav[aria-label] >> nth=0")
        # The labels, not their order: the menu grows as pages are added.
        links = [await a.inner_text() for a in await nav.locator("a").all()]
        assert {"Bandeja", "Nuevo caso", "Respuestas predefinidas", "Contactos"} <= set(links), links
        assert await page.get_attribute("html", "lang") == "es"
        assert "Buscar" in await page.inner_text("form.filters")
        await save_screenshot(page, "console-spanish")
        assert errors == []
