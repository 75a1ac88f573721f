"""Agent notifications in the console: per-event, per-channel preferences on the profile
page (stored, the API's ``notify``), and the browser channel: a notice over the live
stream to that agent's open pages only (both databases: on PostgreSQL through
LISTEN/NOTIFY), shown by the page with the Notification API (headless Chromium)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from posventa.core.config import CalendarConfig
from posventa.core.domain import ChannelName, InboundMessage, ThreadHints
from posventa.core.notifications import BrowserNotice
from posventa.service import Service
from tests.browser import chromium_context, collect_page_errors
from tests.intake.console.harness import PASSWORD, ConsoleClient, Running, start_console
from tests.support import API_TOKEN, make_config

ALWAYS = {d: ("00:00-24:00",) for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@pytest.fixture
async def running(database_url, tmp_path) -> AsyncIterator[Running]:
    config = make_config(database_url, tmp_path, assignment={"enabled": True})
    config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone="UTC", **ALWAYS),))
    service = Service(config)
    run = await start_console(service)
    try:
        yield run
    finally:
        await service.stop()


async def arrive(service: Service, n: int, **kw) -> int:
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=f"<b{n}@x>", sender="ana@cliente.example", text="Hola",
        subject=kw.pop("subject", f"Impresora {n}"), **kw))
    return receipt.case_number


async def api_agent(running: Running, username: str) -> dict:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        async with http.get(f"{running.base}/api/v1/agents") as r:
            assert r.status == 200
            return next(a for a in (await r.json())["agents"] if a["username"] == username)


class Stream:
    """One console page's event stream, read event by event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> tuple[str, dict]:
        name = "message"
        while True:
            line = (await asyncio.wait_for(self.response.content.readline(), 10)).decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                return name, json.loads(line[len("data: "):])

    async def next_notice(self) -> dict:
        while True:
            name, data = await self.next()
            if name == "notify":
                return data


async def open_stream(client: ConsoleClient) -> tuple[aiohttp.ClientResponse, Stream]:
    response = await client.http.get(f"{client.base}/console/events")
    await response.content.readuntil(b"connected")
    return response, Stream(response)


def boxes(page: str, *, checked: bool = False) -> set[str]:
    found = re.findall(r'<input type="checkbox" name="(notify\.[a-z_]+\.[a-z]+)"[^>]*?( checked)?\s*>', page)
    return {name for name, on in found if on or not checked}


async def test_the_profile_page_sets_each_event_and_channel(running):
    async with ConsoleClient(running.base) as agent:
        assert (await agent.login(running.users["agent"]))[0] == 200
        status, page = await agent.get("/console/profile")
        assert status == 200
        # The defaults: everything on Telegram and in the browser, email for assignments and breaches.
        assert len(boxes(page)) == 12
        assert boxes(page, checked=True) == {f"notify.{e}.{c}" for e in ("assigned", "customer_wrote", "sla_warning",
                                                                          "sla_breached")
                                             for c in ("telegram", "browser")} | {"notify.assigned.email",
                                                                                  "notify.sla_breached.email"}
        status, _ = await agent.post("/console/profile/notify", {
            "notify.assigned.browser": "on", "notify.customer_wrote.email": "on", "notify.sla_breached.telegram": "on"},
            allow_redirects=False)
        assert status == 303
        stored = (await api_agent(running, running.users["agent"]))["notify"]
        assert stored == {"assigned": {"telegram": False, "email": False, "browser": True},
                          "customer_wrote": {"telegram": False, "email": True, "browser": False},
                          "sla_warning": {"telegram": False, "email": False, "browser": False},
                          "sla_breached": {"telegram": True, "email": False, "browser": False}}
        _, page = await agent.get("/console/profile?notify=1")
        assert 'id="notify-saved"' in page
        assert boxes(page, checked=True) == {"notify.assigned.browser", "notify.customer_wrote.email",
                                             "notify.sla_breached.telegram"}


async def test_a_browser_notice_reaches_only_its_agents_pages_and_follows_the_preferences(running):
    service = running.service
    assigned = asyncio.Queue()
    service.assigner.subscribe(assigned.put_nowait)
    async with ConsoleClient(running.base) as agent, ConsoleClient(running.base) as other:
        assert (await agent.login(running.users["agent"]))[0] == 200
        assert (await other.login(running.users["admin"]))[0] == 200
        mine, stream = await open_stream(agent)
        theirs, other_stream = await open_stream(other)
        try:
            # To one agent's pages only, here or in another process (through the database's NOTIFY).
            service.console.live.publish_notices([
                BrowserNotice(agent=running.users["admin"], event="assigned", case=7, text="for the admin"),
                BrowserNotice(agent=running.users["agent"], event="assigned", case=8, text="for the agent")])
            assert (await stream.next_notice())["text"] == "for the agent"
            assert (await other_stream.next_notice())["text"] == "for the admin"
            theirs.close()

            # Assignments in the browser turned off: a new case assigned to the agent says
            # nothing there; the customer writing on it does (the next notice on the stream).
            agent_id = (await api_agent(running, running.users["agent"]))["id"]
            await service.assigner.update_agent(agent_id, notify={"assigned": {"browser": False}})
            # The admin's page was open too: they take the first case (round robin, by name)
            # and are then at their capacity of one.
            admin_id = (await api_agent(running, running.users["admin"]))["id"]
            await service.assigner.update_agent(admin_id, capacity=1)
            first = await arrive(service, 0)
            assert (await asyncio.wait_for(assigned.get(), 10)).agent == running.users["admin"]
            number = await arrive(service, 1)
            assert number != first
            done = await asyncio.wait_for(assigned.get(), 10)
            assert (done.case_id, done.agent) == (number, running.users["agent"])
            await arrive(service, 2, thread=ThreadHints(case_number=number), subject=f"Re: [#{number}] Impresora 1")
            notice = await stream.next_notice()
            assert (notice["notify"], notice["case"]) == ("customer_wrote", number)
            assert f"#{number}" in notice["text"] and "Impresora 1" in notice["text"]
        finally:
            mine.close()
            theirs.close()


async def test_the_page_shows_a_browser_notification_once_allowed(running):
    service = running.service
    async with chromium_context(locale="en-US") as context:
        # Every `new Notification(...)` the page makes, recorded (and still made).
        await context.add_init_script("""
            (function () {
              const Real = window.Notification;
              window.__notices = [];
              function Recording(title, options) {
                window.__notices.push({title: title, body: options && options.body, tag: options && options.tag});
                return new Real(title, options);
              }
              Object.defineProperty(Recording, "permission", {get: function () { return Real.permission; }});
              Recording.requestPermission = function () { return Real.requestPermission.apply(Real, arguments); };
              window.Notification = Recording;
            })();
        """)
        page = await context.new_page()
        page.set_default_timeout(10_000)
        errors = collect_page_errors(page)
        await page.goto(f"{running.base}/console/login")
        await page.fill("input[name=username]", running.users["agent"])
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/console/inbox")
        await page.goto(f"{running.base}/console/profile")
        ask = page.locator("#notify-form ~ p [data-ask-notifications]")
        # Permission is asked from a click (browsers refuse it otherwise), once.
        assert await page.evaluate("Notification.permission") == "default"
        await ask.wait_for(state="visible")
        await context.grant_permissions(["notifications"], origin=running.base)
        await ask.click()
        await ask.wait_for(state="hidden")
        assert await page.evaluate("Notification.permission") == "granted"

        await page.goto(f"{running.base}/console/inbox")
        await page.wait_for_selector(".live-status.on")
        assert await page.locator("[data-ask-notifications]").is_hidden()
        number = await arrive(service, 1)  # the agent's page is open: the case is theirs
        await page.wait_for_function("() => window.__notices.length > 0")
        [shown] = await page.evaluate("window.__notices")
        assert f"#{number}" in shown["body"] and "Impresora 1" in shown["body"]
        assert shown["tag"] == f"posventa-assigned-{number}"
        assert errors == []


async def test_a_browser_notice_is_worded_in_its_readers_language_and_time_zone(running):
    async with ConsoleClient(running.base) as agent:
        assert (await agent.login(running.users["agent"]))[0] == 200
        status, _ = await agent.post("/console/profile/locale", {"language": "pt", "timezone": "America/Sao_Paulo"})
        assert status == 200
        response, stream = await open_stream(agent)
        try:
            running.service.console.live.publish_notices([
                BrowserNotice(agent=running.users["agent"], event="sla_warning", case=8, text="in the notifier's words",
                              title="Impressora", due_target="first_response", due_at="2026-03-01T15:30:00+00:00")])
            notice = await stream.next_notice()
            assert notice["text"].startswith("⏰ Caso #8 (Impressora): Primeira resposta vence em 01/03/2026 12:30")
            # A notice without its fields (an event this page cannot word) keeps the notifier's text.
            running.service.console.live.publish_notices([
                BrowserNotice(agent=running.users["agent"], event="assigned", case=9, text="as it came")])
            assert (await stream.next_notice())["text"] == "as it came"
        finally:
            response.close()
