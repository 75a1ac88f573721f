"""Collision warnings (issue 21): who else has a case open and who is typing there, and a
reply written before the case's newest message. The table's rules with a hand-moved
clock; the console's routes over HTTP. The browser story is in test_browser_collision.py,
the cross-process one in tests/scaleout/test_case_presence.py."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from posventa.core.cases import NewCase
from posventa.core.domain import ChannelName, InboundMessage, ThreadHints
from posventa.intake.console.live import LiveUpdates
from posventa.intake.console.presence import CaseViewer, CaseViewers, PresenceReport
from tests.intake.console.harness import PASSWORD, SQLITE_ONLY, ConsoleClient

TAB_A, TAB_B, TAB_C = "tab-aaaaaaaa", "tab-bbbbbbbb", "tab-cccccccc"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def report(case: int, tab: str, user: str, state: str = "here") -> PresenceReport:
    return PresenceReport(case, tab, user, user.title(), state)


def test_viewers_typing_and_expiry_follow_the_reports():
    clock = Clock()
    viewers = CaseViewers(monotonic=clock, expire_seconds=45, typing_seconds=8)
    changed: list[int] = []
    viewers.subscribe(changed.append)
    viewers.report(report(7, TAB_A, "ana"))
    viewers.report(report(7, TAB_B, "leo"))
    viewers.report(report(8, TAB_C, "ana"))
    assert viewers.on_case(7, excluding="leo") == [CaseViewer("ana", "Ana", False)]
    assert [v.username for v in viewers.on_case(7)] == ["ana", "leo"]
    assert changed == [7, 7, 8]
    viewers.report(report(7, TAB_A, "ana"))  # a refresh changes nothing anyone sees
    assert changed == [7, 7, 8]
    viewers.report(report(7, TAB_A, "ana", "typing"))
    assert viewers.on_case(7, excluding="leo") == [CaseViewer("ana", "Ana", True)] and changed[-1] == 7
    viewers.report(report(7, TAB_A, "ana"))  # the stream's refresh keeps the typing on
    assert viewers.on_case(7, excluding="leo")[0].typing
    # A lost "idle": typing ends by itself.
    clock.now += 9
    viewers.sweep()
    assert viewers.on_case(7, excluding="leo") == [CaseViewer("ana", "Ana", False)] and changed[-1] == 7
    # Leo's tab closes with a goodbye; Ana's tabs go silent and age out.
    viewers.report(report(7, TAB_B, "leo", "left"))
    assert [v.username for v in viewers.on_case(7)] == ["ana"]
    clock.now += 40
    viewers.report(report(8, TAB_C, "ana"))  # still there on case 8
    clock.now += 6
    viewers.sweep()
    assert viewers.on_case(7) == [] and [v.username for v in viewers.on_case(8)] == ["ana"]
    assert viewers.size == 1


def test_the_table_is_bounded_per_user_per_case_and_in_all():
    clock = Clock()
    viewers = CaseViewers(monotonic=clock, expire_seconds=45, max_viewers=4, max_per_case=3, max_per_user=2)
    for i in range(5):
        viewers.report(report(1, f"tab-ana-{i:04}", "ana"))
    assert viewers.size == 2 and viewers.dropped == 3
    viewers.report(report(1, TAB_B, "leo"))
    viewers.report(report(1, TAB_C, "eva"))  # case 1 is full
    viewers.report(report(2, TAB_C, "eva"))
    viewers.report(report(3, "tab-zzzzzzzz", "zoe"))  # the table is full
    assert viewers.size == 4 and viewers.dropped == 5
    clock.now += 46  # the expired make room
    viewers.report(report(3, "tab-zzzzzzzz", "zoe"))
    assert viewers.size == 1
    # A tab id someone else's page made up takes the tab over, it does not add one.
    viewers.report(report(3, "tab-zzzzzzzz", "ana"))
    assert [v.username for v in viewers.on_case(3)] == ["ana"] and viewers.size == 1


@pytest.mark.parametrize("payload, field", [
    ("not json", "not JSON"), ("[1]", "not an object"),
    ('{"case": "7", "tab": "tab-aaaaaaaa", "user": "ana", "name": "", "state": "here"}', "case"),
    ('{"case": 0, "tab": "tab-aaaaaaaa", "user": "ana", "name": "", "state": "here"}', "case"),
    ('{"case": true, "tab": "tab-aaaaaaaa", "user": "ana", "name": "", "state": "here"}', "case"),
    ('{"case": 7, "tab": "<b>", "user": "ana", "name": "", "state": "here"}', "tab"),
    ('{"case": 7, "tab": "tab-aaaaaaaa", "user": "", "name": "", "state": "here"}', "user"),
    ('{"case": 7, "tab": "tab-aaaaaaaa", "user": "ana", "name": "' + "x" * 201 + '", "state": "here"}', "name"),
    ('{"case": 7, "tab": "tab-aaaaaaaa", "user": "ana", "name": "", "state": "gone"}', "state"),
])
def test_reports_from_other_processes_are_checked_field_by_field(payload, field, caplog):
    with pytest.raises(ValueError, match=field):
        PresenceReport.parse(payload)
    viewers = CaseViewers()
    viewers._on_notification(payload)  # what the notifier calls: refused, logged, never raised
    assert viewers.size == 0 and viewers.refused == 1
    assert PresenceReport.parse(report(7, TAB_A, "ana").encode()) == report(7, TAB_A, "ana")


async def test_a_case_pages_stream_is_its_presence_until_it_ends():
    live = LiveUpdates(keepalive_seconds=0.05)
    viewer = report(5, TAB_A, "ana")
    watcher = report(5, TAB_B, "leo")

    async def events(request: web.Request) -> web.StreamResponse:
        return await live.stream(request, viewer=viewer)

    async def watch(request: web.Request) -> web.StreamResponse:
        return await live.stream(request, viewer=watcher)

    app = web.Application()
    app.router.add_get("/events", events)
    app.router.add_get("/watch", watch)
    gone = asyncio.Event()
    live.viewers.subscribe(lambda case: gone.set() if case == 5 and not live.viewers.on_case(5, excluding="leo")
                           else None)
    await live.start()
    try:
        async with TestServer(app) as server, TestClient(server) as client:
            async with client.get("/watch") as watching:
                while (await watching.content.readline()).strip() != b": connected":
                    pass
                async with client.get("/events") as stream:
                    while (await stream.content.readline()).strip() != b": connected":
                        pass
                    assert live.viewers.on_case(5, excluding="leo") == [CaseViewer("ana", "Ana", False)]
                    # Leo's page hears that the case's viewers changed (no names on the stream).
                    line = b""
                    while not line.startswith(b"data: "):
                        line = await asyncio.wait_for(watching.content.readline(), 5)
                    assert line.strip() == b'data: {"case": 5, "presence": true}'
                # Ana's stream ended without a goodbye: the server notices at its next write.
                await asyncio.wait_for(gone.wait(), 5)
    finally:
        await live.stop()


async def _second_agent(running) -> ConsoleClient:
    await running.service.console.users.create("agent2", PASSWORD, role="agent", display_name="Bea Two")
    client = ConsoleClient(running.base)
    status, _ = await client.login("agent2")
    assert status == 200
    return client


@SQLITE_ONLY
async def test_typing_reports_reach_the_other_agents_list(running, agent):
    case = await running.service.cases.create_case(NewCase(case_type="request", title="Impresora", description="x",
                                                           contact_name="Ana", contact_email="ana@cliente.com"),
                                                   actor="agent:agent1")
    path = f"/console/cases/{case['number']}/presence"
    async with await _second_agent(running) as bea:
        status, page = await bea.get(path)
        assert status == 200 and 'data-count="0"' in page
        status, _ = await agent.post(path, {"tab": TAB_A, "state": "typing"})
        assert status == 204
        status, page = await bea.get(path)
        assert 'data-username="agent1"' in page and "Agent One" in page and "typing-note" in page
        assert "escribiendo" in (await bea.get(path, headers={"Accept-Language": "es"}))[1]
        status, page = await agent.get(path)  # nobody but themself
        assert 'data-count="0"' in page
        for bad in ({"tab": "short", "state": "typing"}, {"tab": TAB_A, "state": "here"}, {"tab": TAB_A}):
            status, page = await agent.post(path, bad)
            assert status == 422 and "tab" in page
        status, _ = await agent.post(path, {"tab": TAB_A, "state": "left"})
        assert status == 204
        status, page = await bea.get(f"/console/cases/{case['number']}")
        assert 'id="case-presence"' in page and 'data-count="0"' in page
        status, _ = await agent.post(path, {"tab": TAB_A, "state": "idle"}, csrf=False)
        assert status == 403  # the CSRF guard as on every form


_SEEN = re.compile(r'name="seen" value="(\d+)"')


async def test_a_reply_written_before_a_newer_message_asks_for_confirmation(running, agent):
    service = running.service
    case = await service.cases.create_case(NewCase(case_type="request", title="Impresora", description="x",
                                                   contact_name="Ana", contact_email="ana@cliente.com"),
                                           actor="agent:agent1")
    number = case["number"]
    status, page = await agent.get(f"/console/cases/{number}")
    seen = _SEEN.search(page).group(1)
    await service.inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id="<n@cliente.com>",
                                               sender="ana@cliente.com", subject="Re: Impresora",
                                               text="Ya funciona, gracias", thread=ThreadHints(case_number=number)))
    status, page = await agent.post(f"/console/cases/{number}/reply", {"text": "Probá reiniciarla", "seen": seen})
    assert status == 409 and 'id="stale-reply"' in page and "Probá reiniciarla</textarea>" in page
    newest = max(m["id"] for m in (await service.cases.get_case(number))["messages"])
    assert _SEEN.search(page).group(1) == str(newest) and f'id="m{newest}"' in page
    assert re.search(rf'class="msg in author-customer newer" id="m{newest}"', page)
    assert running.email.sent == [] or all(m.kind != "reply" for m in running.email.sent)
    # Sending from the confirmation page (its seen is the newest message) sends.
    status, page = await agent.post(f"/console/cases/{number}/reply", {"text": "Probá reiniciarla", "seen": str(newest)})
    assert status == 200 and 'id="notice"' in page
    [sent] = [m for m in await running.email.wait_for(1) if m.kind == "reply"]
    assert sent.text == "Probá reiniciarla"
    status, page = await agent.post(f"/console/cases/{number}/reply", {"text": "x", "seen": "-3"})
    assert status == 422 and "seen" in page
