"""The inbox's SLA due column in Chromium, on both databases: sorted by the nearest due
time by default, a breached case first and red, one under 25% of its target amber.
Time comes from the service's injected clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from posventa.core.config import CalendarConfig, SlaPolicyConfig
from posventa.core.domain import ChannelName, InboundMessage
from posventa.service import Service
from tests.browser import chromium_browser, collect_page_errors, save_screenshot
from tests.intake.console.harness import PASSWORD, ConsoleClient, start_console
from tests.support import FakeClock, make_config

BA = ZoneInfo("America/Argentina/Buenos_Aires")


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 4, hour, minute, tzinfo=BA).astimezone(UTC)  # a Friday


@pytest.fixture
async def running(database_url, tmp_path):
    clock = FakeClock(at(10))
    config = make_config(database_url, tmp_path, sla={
        "first_response_minutes": 120,
        "policies": (SlaPolicyConfig(name="urgent", channels=("webchat",), first_response_minutes=30),)})
    config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone=BA.key),))
    service = Service(config, clock=clock)
    run = await start_console(service)
    try:
        yield run, clock
    finally:
        await service.stop()


async def arrive(service: Service, n: int, channel: ChannelName, title: str) -> int:
    receipt = await service.inbox.receive(InboundMessage(
        channel=channel, external_id=f"m{n}@x" if channel == ChannelName.EMAIL else f"m{n}",
        sender=f"c{n}@cliente.example" if channel == ChannelName.EMAIL else f"session-{n}",
        text=title, subject=title))
    assert receipt.case_number is not None
    return receipt.case_number


async def test_the_inbox_shows_a_red_breached_case_first(running):
    run, clock = running
    service = run.service
    warning = await arrive(service, 1, ChannelName.EMAIL, "Factura duplicada")  # due 12:00
    breached = await arrive(service, 2, ChannelName.WEBCHAT, "No puedo entrar")  # "urgent": due 10:30
    clock.current = at(11, 40)
    fine = await arrive(service, 3, ChannelName.EMAIL, "Consulta de precios")  # due 13:40
    clock.current = at(11, 45)  # 15 of 120 minutes left on the first: under 25%

    # Plain HTTP first: the fragment's order and classes, whatever the browser does.
    async with ConsoleClient(run.base) as client:
        assert (await client.login(run.users["agent"]))[0] == 200
        status, html = await client.get("/console/inbox")
        assert status == 200
        order = [html.index(f'data-case="{n}"') for n in (breached, warning, fine)]
        assert order == sorted(order)

    async with chromium_browser() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 700})
        page.set_default_timeout(10_000)
        errors = collect_page_errors(page)
        await page.goto(f"{run.base}/console/login")
        await page.fill("input[name=username]", run.users["agent"])
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/console/inbox*")
        rows = page.locator("table.cases tbody tr")
        assert await rows.nth(0).get_attribute("data-case") == str(breached)
        first_due = rows.nth(0).locator("td.due")
        assert "due-breached" in (await first_due.get_attribute("class"))
        assert "1h 15m overdue" in await first_due.inner_text()
        red = await first_due.evaluate("el => getComputedStyle(el).backgroundColor")
        assert red == "rgb(255, 208, 204)"
        second_due = rows.nth(1).locator("td.due")
        assert await rows.nth(1).get_attribute("data-case") == str(warning)
        assert "due-warning" in (await second_due.get_attribute("class"))
        assert "in 15m" in await second_due.inner_text()
        assert "due-ok" in (await rows.nth(2).locator("td.due").get_attribute("class"))
        await save_screenshot(page, "console-inbox-sla")
        assert errors == []
