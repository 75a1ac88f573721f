"""Collision warnings across processes (issue 21): two console live hubs, each with its
own PostgreSQL connections and LISTEN, as two ``posventa serve`` processes have. A case
page open on one shows the agent on the other, typing or not, and loses them when their
page closes or goes silent; a malformed notification is refused, never applied."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from posventa.core.persistence import Database
from posventa.core.persistence.notify import PgNotifier
from posventa.intake.console.live import LiveUpdates
from posventa.intake.console.presence import TOPIC, CaseViewer, PresenceReport


@pytest.fixture
async def handles(pg_url):
    dbs = [Database(pg_url, pool_size=2) for _ in range(2)]
    yield dbs
    for d in dbs:
        await d.dispose()


async def until(live: LiveUpdates, check: Callable[[], bool], what: str) -> None:
    """Wait for the table's change listener to make ``check`` true (no polling)."""
    reached = asyncio.Event()
    live.viewers.subscribe(lambda _case: reached.set() if check() else None)
    if not check():
        try:
            await asyncio.wait_for(reached.wait(), 10)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


async def connected(client: TestClient, path: str):
    response = await client.get(path)
    while (await response.content.readline()).strip() != b": connected":
        pass
    return response


@pytest.mark.postgres
async def test_a_page_on_one_process_shows_the_agent_typing_on_the_other(handles):
    now = [1000.0]
    notifiers = [PgNotifier(db=h, backoff_base=0.05) for h in handles]
    a, b = (LiveUpdates(notifier=n, keepalive_seconds=0.05, monotonic=lambda: now[0]) for n in notifiers)
    ana = PresenceReport(9, "tab-ana-0001", "ana", "Ana Pérez", "here")
    leo = PresenceReport(9, "tab-leo-0001", "leo", "Leo Gómez", "here")

    def page(live: LiveUpdates, viewer: PresenceReport) -> web.Application:
        async def events(request: web.Request) -> web.StreamResponse:
            return await live.stream(request, viewer=viewer)

        app = web.Application()
        app.router.add_get("/events", events)
        return app

    for n in notifiers:
        await n.start()
    await a.start()
    await b.start()
    try:
        assert all([await n.ready(5) for n in notifiers])
        async with TestServer(page(b, leo)) as server_b, TestClient(server_b) as client_b, \
                TestServer(page(a, ana)) as server_a, TestClient(server_a) as client_a:
            leo_page = await connected(client_b, "/events")
            ana_page = await connected(client_a, "/events")
            await until(b, lambda: b.viewers.on_case(9, excluding="leo") == [CaseViewer("ana", "Ana Pérez", False)],
                        "B hearing that Ana opened the case on A")
            await until(a, lambda: [v.username for v in a.viewers.on_case(9, excluding="ana")] == ["leo"],
                        "A hearing Leo, whose page is on B")
            # Leo's page (on B) is told that the case's viewers changed.
            line = b""
            while not line.startswith(b"data: "):
                line = await asyncio.wait_for(leo_page.content.readline(), 5)
            assert line.strip() == b'data: {"case": 9, "presence": true}'

            # Ana types (her page's report reaches A's console): B shows it, then its end.
            typing_ana = CaseViewer("ana", "Ana Pérez", True)
            a.viewers.report(PresenceReport(9, ana.tab, "ana", "Ana Pérez", "typing"))
            await until(b, lambda: b.viewers.on_case(9, excluding="leo") == [typing_ana], "B showing Ana typing")
            a.viewers.report(PresenceReport(9, ana.tab, "ana", "Ana Pérez", "idle"))
            await until(b, lambda: b.viewers.on_case(9, excluding="leo") == [CaseViewer("ana", "Ana Pérez", False)],
                        "B showing Ana stopped")

            # A malformed notification is refused on both sides and changes nothing; the
            # report after it (in order) shows that B has read past it.
            notifiers[0].publish(TOPIC, '{"case": 9, "tab": "<script>", "user": "x", "name": "", "state": "here"}')
            a.viewers.report(PresenceReport(8, "tab-ana-0002", "ana", "Ana Pérez", "here"))
            await until(b, lambda: bool(b.viewers.on_case(8)), "B hearing the report after the malformed one")
            assert b.viewers.refused == 1 and a.viewers.refused == 1
            assert [v.username for v in b.viewers.on_case(9)] == ["ana", "leo"]
            a.viewers.report(PresenceReport(8, "tab-ana-0002", "ana", "Ana Pérez", "left"))

            # Ana's page closes: A's stream ends and says so; B drops her.
            ana_page.close()
            await until(b, lambda: b.viewers.on_case(9, excluding="leo") == [], "B dropping Ana after her page closed")
            leo_page.close()
        # A process that dies says nothing: its tabs go silent and age out everywhere.
        b.viewers.report(PresenceReport(9, "tab-eva-0001", "eva", "Eva", "here"))
        await until(a, lambda: [v.username for v in a.viewers.on_case(9)] == ["eva"] and not a.viewers.on_case(8),
                    "A hearing Eva")
        now[0] += 46
        a.viewers.sweep()
        assert a.viewers.on_case(9) == [] and a.viewers.size == 0
    finally:
        await a.stop()
        await b.stop()
        for n in notifiers:
            await n.stop()
