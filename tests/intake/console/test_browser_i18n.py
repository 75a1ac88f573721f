"""The words the console's scripts write, in the reader's language (headless Chromium, both
databases): the live stream's state, the SLA countdown as it keeps ticking, the Markdown
editor's toolbar and status bar. The page's clock is Playwright's, moved by hand, and the
service's is a FakeClock at the same moment: no waiting on time."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from posventa.core.config import CalendarConfig
from posventa.core.domain import ChannelName, InboundMessage
from posventa.service import Service
from tests.browser import chromium_browser, collect_page_errors
from tests.intake.console.harness import PASSWORD, Running, start_console
from tests.support import FakeClock, make_config

START = datetime(2026, 12, 4, 13, 0, tzinfo=UTC)
ALWAYS = {d: ("00:00-24:00",) for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@pytest.fixture
async def running(database_url, tmp_path) -> AsyncIterator[Running]:
    config = make_config(database_url, tmp_path, sla={"first_response_minutes": 120})
    config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone="UTC", **ALWAYS),))
    service = Service(config, clock=FakeClock(START))
    run = await start_console(service)
    try:
        yield run
    finally:
        await service.stop()


async def test_the_scripts_words_follow_the_readers_language(running):
    receipt = await running.service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id="<i18n-1@x>", sender="rui@cliente.com.br", text="Não liga",
        subject="Impressora"))
    number = receipt.case_number
    async with chromium_browser() as browser:
        context = await browser.new_context(locale="pt-BR", viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(10_000)
        errors = collect_page_errors(page)
        await page.clock.install(time=START)
        await page.goto(f"{running.base}/console/login")
        await page.fill("input[name=username]", running.users["agent"])
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/console/inbox")

        await page.wait_for_selector(".live-status.on")
        assert await page.inner_text(".live-status") == "ao vivo"
        due = page.locator(f'tr[data-case="{number}"] td.due time')
        assert await due.inner_text() == "em 2 h 0 min"  # the server's words
        # Two hours and ten minutes later by the page's clock: the script's own words.
        await page.clock.pause_at(START + timedelta(hours=2, minutes=10))  # fires the ticker once
        await page.wait_for_function("document.querySelector('td.due time').textContent.startsWith('vencido')")
        assert await due.inner_text() == "vencido há 10 min"

        await page.goto(f"{running.base}/console/cases/{number}?tab=kb")
        editor = page.locator("#kb-answer-editor.EasyMDEContainer")
        await editor.locator(".CodeMirror").wait_for()
        assert re.match(r"Negrito\b", await editor.locator("button.bold").get_attribute("title"))
        assert await editor.locator("button.preview").inner_text() == "Pré-visualização"
        assert await editor.locator(".editor-statusbar .upload-image").inner_text() == \
            "Anexe imagens arrastando-as ou colando-as."
        assert errors == []
