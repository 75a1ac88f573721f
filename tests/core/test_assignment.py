"""Automatic assignment on both databases: round robin and least-open-cases among
available agents under capacity, sectors, manual assignment winning, reassignment after
an agent has been away, and the agents' API (422s naming the field)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import aiohttp
import pytest

from posventa.core.config import CalendarConfig
from posventa.core.domain import ChannelName, InboundMessage
from posventa.service import Service
from tests.support import API_TOKEN, FakeClock, make_config

ALWAYS = {d: ("00:00-24:00",) for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@pytest.fixture
async def running(database_url, tmp_path, request):
    strategy = getattr(request, "param", "round_robin")
    clock = FakeClock(datetime(2026, 12, 4, 15, 0, tzinfo=UTC))
    config = make_config(database_url, tmp_path, assignment={"enabled": True, "strategy": strategy,
                                                             "reassign_after_minutes": 30})
    config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone="UTC", **ALWAYS),))
    service = Service(config, clock=clock)
    assigned = []
    changed = asyncio.Condition()

    async def record(done):
        async with changed:
            assigned.append(done)
            changed.notify_all()

    async with service:
        service.assigner.subscribe(record)
        ids = {}
        for name in ("ana", "bruno", "carla"):
            user = await service.console.users.create(name, "correct horse battery staple", role="agent")
            ids[name] = user.id
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:

            async def wait_for(n: int) -> None:
                async with changed:
                    await asyncio.wait_for(changed.wait_for(lambda: len(assigned) >= n), 10)

            yield service, http, clock, ids, assigned, wait_for


async def patch(http, user_id: int, body: dict, status: int = 200):
    async with http.patch(f"/api/v1/agents/{user_id}", json=body) as r:
        answer = await r.json()
        assert r.status == status, answer
        return answer


async def arrive(service: Service, n: int) -> int:
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=f"<a{n}@x>", sender=f"c{n}@cliente.example", text="Hola",
        subject=f"Consulta {n}"))
    return receipt.case_number


async def test_three_arrivals_round_robin_over_two_agents_with_capacity_1_and_2(running):
    service, http, _, ids, assigned, wait_for = running
    await patch(http, ids["ana"], {"capacity": 1, "available": True})
    await patch(http, ids["bruno"], {"capacity": 2, "available": True})
    # carla is not available: she gets nothing.
    cases = []
    for n in range(1, 4):
        cases.append(await arrive(service, n))
        await wait_for(n)
    owners = {c: (await service.cases.get_case(c))["assigned_agent"] for c in cases}
    assert owners == {cases[0]: "ana", cases[1]: "bruno", cases[2]: "bruno"}
    # A fourth finds everyone at capacity: it waits, and the sweep gives it out once a slot frees.
    fourth = await arrive(service, 4)
    await service.assigner.sweep()
    assert (await service.cases.get_case(fourth))["assigned_agent"] is None
    await service.cases.set_type(cases[0], "request", agent="ana")  # a case closes with its type known
    await service.cases.change_activity(cases[0], "closed", agent="ana")
    await service.assigner.sweep()
    assert (await service.cases.get_case(fourth))["assigned_agent"] == "ana"
    history = (await service.cases.get_case(fourth))["history"]
    assert any(h["kind"] == "assign" and h["actor"] == "system" and h["to"] == "ana" for h in history)
    async with http.get("/api/v1/agents") as r:
        agents = {a["username"]: a for a in (await r.json())["agents"]}
    assert (agents["ana"]["open_cases"], agents["bruno"]["open_cases"], agents["carla"]["available"]) == (1, 2, False)


@pytest.mark.parametrize("running", ["least_open"], indirect=True)
async def test_least_open_cases_and_sectors(running):
    service, http, _, ids, assigned, wait_for = running
    await patch(http, ids["ana"], {"capacity": 5, "available": True, "sectors": ["billing"]})
    await patch(http, ids["bruno"], {"capacity": 5, "available": True})
    manual = await arrive(service, 1)
    await wait_for(1)
    await service.cases.assign(manual, "bruno", agent="lead")  # manual assignment wins
    await arrive(service, 2)
    await wait_for(2)
    assert assigned[-1].agent == "ana"  # fewer open cases than bruno
    # A case derived to billing goes to billing's agent even with more open cases.
    derived = await arrive(service, 3)
    await wait_for(3)
    await service.cases.assign(derived, None, agent="lead")
    await service.cases.change_activity(derived, "derived", agent="lead", sector="billing")
    await service.assigner.sweep()
    assert (await service.cases.get_case(derived))["assigned_agent"] == "ana"
    assert (await service.cases.get_case(manual))["assigned_agent"] == "bruno"


async def test_an_agent_away_too_long_has_their_cases_reassigned(running):
    service, http, clock, ids, _, wait_for = running
    await patch(http, ids["ana"], {"available": True})
    case = await arrive(service, 1)
    await wait_for(1)
    await patch(http, ids["ana"], {"available": False})
    await service.assigner.seen_in_console("bruno")  # bruno has the console open
    clock.advance(minutes=10)
    await service.assigner.seen_in_console("bruno")
    assert await service.assigner.sweep() == []  # ana away 10 minutes: not yet
    clock.advance(minutes=25)
    await service.assigner.seen_in_console("bruno")
    [moved] = await service.assigner.sweep()
    assert (moved.case_id, moved.agent, moved.previous) == (case, "bruno", "ana")
    history = (await service.cases.get_case(case))["history"]
    assert any(h["kind"] == "assign" and h["from"] == "ana" and "away" in (h["detail"] or "") for h in history)


@pytest.mark.parametrize("body,field", [
    ({"capacity": 0}, "capacity"), ({"capacity": -3}, "capacity"), ({"capacity": "two"}, "capacity"),
    ({"sectors": ["a,b"]}, "sectors.0"), ({"bogus": 1}, "bogus"),
    ({"notify": {"assigned": {"email": "yes"}}}, "notify.assigned.email"), ({"email": "not-an-address"}, "email"),
])
async def test_bad_agent_settings_are_422_naming_the_field(running, body, field):
    _, http, _, ids, _, _ = running
    answer = await patch(http, ids["ana"], body, status=422)
    assert answer["field"] == field


async def test_the_same_telegram_user_id_twice_is_refused(running):
    _, http, _, ids, _, _ = running
    await patch(http, ids["ana"], {"telegram_user_id": 4242})
    answer = await patch(http, ids["bruno"], {"telegram_user_id": 4242}, status=422)
    assert answer["field"] == "telegram_user_id"


async def test_an_open_console_page_makes_its_agent_available(running):
    from tests.intake.console.harness import ConsoleClient

    service, http, _, ids, _, wait_for = running
    async with ConsoleClient(f"http://127.0.0.1:{service.http.bound_port}") as console:
        assert (await console.login("carla"))[0] == 200
        async with console.http.get(console.base + "/console/events") as stream:
            assert b"connected" in await stream.content.readuntil(b"connected")
            # The presence report is committed before "connected" is written.
            assert (await service.assigner.get_agent(ids["carla"]))["available"] is True
            case = await arrive(service, 1)
            await wait_for(1)
            assert (await service.cases.get_case(case))["assigned_agent"] == "carla"
