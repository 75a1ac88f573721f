"""/api/v1/calendars on both databases: admin tokens only; list, get, create, change and
delete; a definition that cannot work is a 422 naming the field (the rule the console
and config follow); a change is applied to due times at once."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from posventa.core.config import CalendarConfig, SlaPolicyConfig
from posventa.core.domain import ChannelName, InboundMessage
from posventa.service import Service
from tests.support import API_TOKEN, FakeClock, make_config

ADMIN_TOKEN = "admin-token-calendars-0123456789"
BA = ZoneInfo("America/Argentina/Buenos_Aires")
FRIDAY_1730 = datetime(2026, 12, 4, 17, 30, tzinfo=BA)  # Monday 7 is closed in config
WEEKDAYS_9_18 = {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


@pytest.fixture
async def running(database_url, tmp_path):
    config = make_config(database_url, tmp_path, sla={"first_response_minutes": 120},
                         api={"admin_tokens": (ADMIN_TOKEN,)})
    config = dataclasses.replace(
        config, calendars=(CalendarConfig(name="default", timezone=BA.key, closed_days=("2026-12-07",)),
                           CalendarConfig(name="taller", timezone=BA.key)),
        sla=dataclasses.replace(config.sla, policies=(
            SlaPolicyConfig(name="incidents", types=("incident",), calendar="taller", first_response_minutes=60),)))
    service = Service(config, clock=FakeClock(FRIDAY_1730.astimezone(UTC)))
    async with service:
        base = f"http://127.0.0.1:{service.http.bound_port}/api/v1"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin, \
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as agent:
            yield service, base, admin, agent


async def call(http, method: str, url: str, status: int, json=None):
    async with http.request(method, url, json=json) as r:
        answer = await r.json()
        assert r.status == status, answer
        return answer


def ba(day: int, hour: int, minute: int = 0) -> str:
    return datetime(2026, 12, day, hour, minute, tzinfo=BA).astimezone(UTC).isoformat()


async def due_of_a_new_case(service: Service, n: int) -> str:
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=f"<c{n}@x>", sender=f"c{n}@cliente.example", text="Hola",
        subject=f"Consulta {n}"))
    return (await service.cases.get_case(receipt.case_number))["first_response_due_at"]


async def test_only_admin_tokens(running):
    _, base, _, agent = running
    for method, path, body in (("GET", "/calendars", None), ("GET", "/calendars/default", None),
                               ("POST", "/calendars", {"name": "x", "timezone": "UTC"}),
                               ("PATCH", "/calendars/default", {"sat": []}), ("DELETE", "/calendars/default", None)):
        assert (await call(agent, method, base + path, 403, body))["error"] == "forbidden"


async def test_list_get_create_change_delete(running):
    service, base, admin, _ = running
    listed = (await call(admin, "GET", f"{base}/calendars", 200))["calendars"]
    assert [(c["name"], c["edited"], c["configured"]) for c in listed] == [("default", False, True),
                                                                           ("taller", False, True)]
    default = await call(admin, "GET", f"{base}/calendars/default", 200)
    assert default["timezone"] == BA.key and default["closed_days"] == ["2026-12-07"]
    assert default["mon"] == ["09:00-18:00"] and default["sat"] == []
    await call(admin, "GET", f"{base}/calendars/{quote('no such')}", 404)

    created = await call(admin, "POST", f"{base}/calendars", 201, {
        "name": "Oficina São Paulo", "timezone": "America/Sao_Paulo", "country": "BR", "subdivision": "SP",
        **WEEKDAYS_9_18, "closed_days": ["2026-12-24"], "open_days": ["2026-12-26 09:00-13:00"]})
    assert created["edited"] is True and created["configured"] is False and created["sat"] == []
    assert await call(admin, "GET", f"{base}/calendars/{quote('Oficina São Paulo')}", 200) == created
    # The name is taken now, as config's are.
    for name in ("Oficina São Paulo", "default"):
        refused = await call(admin, "POST", f"{base}/calendars", 422, {"name": name, "timezone": "UTC"})
        assert refused["field"] == "name"

    # A change keeps the fields not given; config's calendar is overridden.
    changed = await call(admin, "PATCH", f"{base}/calendars/default", 200, {"mon": ["10:00-12:00", "13:00-17:00"]})
    assert changed["mon"] == ["10:00-12:00", "13:00-17:00"] and changed["closed_days"] == ["2026-12-07"]
    assert changed["edited"] is True and changed["configured"] is True

    # Deleting the edit brings config's back; deleting a stored-only calendar removes it.
    back = await call(admin, "DELETE", f"{base}/calendars/default", 200)
    assert back["calendar"]["mon"] == ["09:00-18:00"] and back["calendar"]["edited"] is False
    gone = await call(admin, "DELETE", f"{base}/calendars/{quote('Oficina São Paulo')}", 200)
    assert gone == {"calendar": None}
    await call(admin, "GET", f"{base}/calendars/{quote('Oficina São Paulo')}", 404)
    await call(admin, "DELETE", f"{base}/calendars/{quote('Oficina São Paulo')}", 404)
    # Config's own, with no edit, cannot be deleted here (a policy uses this one, too).
    refused = await call(admin, "DELETE", f"{base}/calendars/taller", 409)
    assert refused["error"] == "conflict" and "configuration" in refused["message"]
    assert [c["name"] for c in await service.calendar_editor.list()] == ["default", "taller"]


async def test_a_change_moves_the_next_due_times(running):
    """Friday 17:30, 2 business hours, Monday closed in config: due Tuesday 10:30. Opening
    Saturday morning by the API makes it Saturday 10:30."""
    service, base, admin, _ = running
    assert await due_of_a_new_case(service, 1) == ba(8, 10, 30)
    await call(admin, "PATCH", f"{base}/calendars/default", 200, {"sat": ["09:00-13:00"]})
    assert await due_of_a_new_case(service, 2) == ba(5, 10, 30)
    await call(admin, "DELETE", f"{base}/calendars/default", 200)
    assert await due_of_a_new_case(service, 3) == ba(8, 10, 30)


@pytest.mark.parametrize("change,field,words", [
    ({"tue": ["09:00-13:00", "12:00-18:00"]}, "tue", "overlap"),
    ({"wed": ["18:00-09:00"]}, "wed", "inverted"),
    ({"thu": ["9 to 5"]}, "thu", "not a span"),
    ({"timezone": "America/Nowhere"}, "timezone", "unknown time zone"),
    ({"timezone": ""}, "timezone", "time zone"),
    ({"country": "XX"}, "country", "unknown country"),
    ({"country": "AR", "subdivision": "ZZ"}, "subdivision", "no subdivision"),
    ({"closed_days": ["24/12/2026"]}, "closed_days", "not a date"),
    ({d: [] for d in ("mon", "tue", "wed", "thu", "fri")}, "mon", "open"),
])
async def test_a_definition_that_cannot_work_is_422_naming_the_field(running, change, field, words):
    service, base, admin, _ = running
    before = await call(admin, "GET", f"{base}/calendars/default", 200)
    refused = await call(admin, "PATCH", f"{base}/calendars/default", 422, change)
    assert refused["field"] == field and words in refused["message"], refused
    created = await call(admin, "POST", f"{base}/calendars", 422,
                         {"name": "nueva", "timezone": BA.key, **WEEKDAYS_9_18, **change})
    assert created["field"] == field
    assert await call(admin, "GET", f"{base}/calendars/default", 200) == before
    await call(admin, "GET", f"{base}/calendars/nueva", 404)


@pytest.mark.parametrize("name", [".hidden", " padded", "a/b", "tab\there", "x" * 81])
async def test_a_name_the_rule_refuses(running, name):
    _, base, admin, _ = running
    refused = await call(admin, "POST", f"{base}/calendars", 422, {"name": name, "timezone": "UTC", **WEEKDAYS_9_18})
    assert refused["field"] == "name"


async def test_bad_bodies_are_422_naming_the_field(running):
    _, base, admin, _ = running
    for body, field in (({"mon": "09:00-18:00"}, "mon"), ({"colour": "red"}, "colour"),
                        ({"mon": ["09:00-18:00"] * 401}, "mon")):
        assert (await call(admin, "PATCH", f"{base}/calendars/default", 422, body))["field"] == field
    assert (await call(admin, "POST", f"{base}/calendars", 422, {"name": "x"}))["field"] == "timezone"
