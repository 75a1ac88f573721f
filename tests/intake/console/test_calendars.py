"""Admins edit business-hours calendars in the console (core/calendars.py), on both
databases: refused with the field named by the rules config follows, stored over
config's, and used by the SLA clock at once, in this process and (PostgreSQL) in
another one sharing the database."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from posventa.core.config import CalendarConfig
from posventa.core.domain import ChannelName, InboundMessage
from posventa.service import Service
from tests.intake.console.harness import ConsoleClient, start_console
from tests.support import FakeClock, make_config

BA = ZoneInfo("America/Argentina/Buenos_Aires")
FRIDAY_1730 = datetime(2026, 12, 4, 17, 30, tzinfo=BA)  # Monday 7 is closed in config


def config_for(database_url, tmp_path):
    config = make_config(database_url, tmp_path, sla={"first_response_minutes": 120})
    return dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone=BA.key,
                                                                 closed_days=("2026-12-07",)),))


@pytest.fixture
async def running(database_url, tmp_path):
    clock = FakeClock(FRIDAY_1730.astimezone(UTC))
    service = Service(config_for(database_url, tmp_path), clock=clock)
    run = await start_console(service)
    try:
        yield run
    finally:
        await service.stop()


WEEK = {"timezone": BA.key, "mon": "09:00-18:00", "tue": "09:00-18:00", "wed": "09:00-18:00",
        "thu": "09:00-18:00", "fri": "09:00-18:00", "sat": "", "sun": "", "country": "", "subdivision": "",
        "closed_days": "", "open_days": ""}


async def due_of_a_new_case(service: Service, n: int) -> str:
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=f"<c{n}@x>", sender=f"c{n}@cliente.example", text="Hola",
        subject=f"Consulta {n}"))
    return (await service.cases.get_case(receipt.case_number))["first_response_due_at"]


def ba(day: int, hour: int, minute: int = 0) -> str:
    return datetime(2026, 12, day, hour, minute, tzinfo=BA).astimezone(UTC).isoformat()


@pytest.mark.parametrize("field,value,error", [
    ("tue", "09:00-13:00, 12:00-18:00", "overlap"),
    ("wed", "18:00-09:00", "inverted"),
    ("country", "ZZ", "unknown country"),
    ("timezone", "Mars/Olympus", "unknown time zone"),
    ("closed_days", "2026-13-01", "not a date"),
])
async def test_a_wrong_value_is_refused_naming_its_field(running, field, value, error):
    async with ConsoleClient(running.base) as admin:
        assert (await admin.login(running.users["admin"]))[0] == 200
        status, page = await admin.post("/console/admin/calendars", {"name": "default", **WEEK, field: value})
        assert status == 422
        assert f'id="error-{field}"' in page and error in page
    # Nothing changed: Monday 7 is still closed.
    assert await due_of_a_new_case(running.service, 1) == ba(8, 10, 30)


async def test_only_admins_edit_calendars(running):
    async with ConsoleClient(running.base) as agent:
        assert (await agent.login(running.users["agent"]))[0] == 200
        assert (await agent.get("/console/admin/calendars"))[0] == 403
        assert (await agent.post("/console/admin/calendars", {"name": "default", **WEEK}))[0] == 403


async def test_an_edited_calendar_is_used_at_once_and_by_another_process(running, database_url, tmp_path):
    service = running.service
    assert await due_of_a_new_case(service, 1) == ba(8, 10, 30)  # config: Monday 7 closed
    other = None
    if database_url.startswith("postgresql"):
        # A second process on the same database: it hears of the edit through NOTIFY.
        other = Service(config_for(database_url, tmp_path), clock=FakeClock(FRIDAY_1730.astimezone(UTC)))
        await other.start()
        applied = asyncio.Event()
        apply = other.calendar_editor._apply

        def watching(setup):
            apply(setup)
            if not setup.calendars["default"].closed_days:
                applied.set()
        other.calendar_editor._apply = watching
    try:
        async with ConsoleClient(running.base) as admin:
            assert (await admin.login(running.users["admin"]))[0] == 200
            status, page = await admin.get("/console/admin/calendars")
            assert status == 200 and "2026-12-07" in page  # config's closed day, shown for editing
            status, page = await admin.post("/console/admin/calendars",
                                            {"name": "default", **WEEK, "mon": "09:00-13:00, 14:00-18:00"})
            assert status == 200 and 'id="notice"' in page  # after the redirect
            assert "2026-12-07" not in page and "09:00-13:00, 14:00-18:00" in page
        # Monday 7 now open (09-13, 14-18): 30 minutes on Friday, then 90 from Monday 09:00.
        assert await due_of_a_new_case(service, 2) == ba(7, 10, 30)
        if other is not None:
            await asyncio.wait_for(applied.wait(), 10)
            assert await due_of_a_new_case(other, 3) == ba(7, 10, 30)
    finally:
        if other is not None:
            await other.stop()


async def test_an_edited_calendar_survives_a_restart(database_url, tmp_path):
    clock = FakeClock(FRIDAY_1730.astimezone(UTC))
    first = Service(config_for(database_url, tmp_path), clock=clock)
    run = await start_console(first)
    try:
        await first.calendar_editor.save("default", {**{k: v.split(", ") if v else [] for k, v in WEEK.items()
                                                        if k not in ("timezone", "country", "subdivision")},
                                                     "timezone": BA.key}, actor="admin1")
    finally:
        await first.stop()
    again = Service(config_for(database_url, tmp_path), clock=clock)
    await again.start()
    try:
        assert await due_of_a_new_case(again, 1) == ba(7, 10, 30)
        assert [c["name"] for c in await again.calendar_editor.list() if c["edited"]] == ["default"]
    finally:
        await again.stop()
    assert run.users
