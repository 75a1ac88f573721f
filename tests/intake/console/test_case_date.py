"""A case opened by hand carries the date the customer got in touch (a phone call
yesterday): never in the future, now by default; it is the case's date in reports."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp

from posventa.core.read_models import ReadModels
from tests.intake.console.harness import ConsoleClient
from tests.support import API_TOKEN

CASE = {"title": "Llamó por el tóner", "description": "No imprime", "contact": {"name": "Leo"}, "type": "request"}


async def test_the_api_takes_a_past_case_date_and_refuses_a_future_one(running):
    service = running.service
    now = service.clock.now()
    yesterday = (now - timedelta(days=1)).replace(microsecond=0)
    async with aiohttp.ClientSession(running.base, headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        async with http.post("/api/v1/cases", json={**CASE, "date": yesterday.isoformat()}) as r:
            assert r.status == 201, await r.text()
            dated = await r.json()
        assert datetime.fromisoformat(dated["created_at"]) == yesterday
        assert dated["history"][0]["kind"] == "opened" and "dated" in dated["history"][0]["detail"]
        async with http.post("/api/v1/cases", json=CASE) as r:
            plain = await r.json()
        assert datetime.fromisoformat(plain["created_at"]) >= now and plain["history"][0]["detail"] is None
        for bad in ((now + timedelta(hours=2)).isoformat(), "2026-12-06T10:00:00", "ayer", "1999-12-31T23:00:00Z"):
            async with http.post("/api/v1/cases", json={**CASE, "date": bad}) as r:
                body = await r.json()
                assert r.status == 422 and body["field"] == "date", (bad, body)
    # Reports count the case on its date: yesterday's window has it, today's does not.
    day = yesterday.replace(hour=0, minute=0, second=0)
    counts = await ReadModels(db=service.db).cases_per_type_and_category(since=day, until=day + timedelta(days=1))
    assert counts == {"request": {"(no category)": 1}}


async def test_the_console_new_case_form_takes_the_date(running, agent: ConsoleClient):
    status, page = await agent.get("/console/cases/new")
    # An explicit ISO field in the agent's time zone (never the browser's own date order).
    local = running.service.console.tz
    shown = running.service.clock.now().astimezone(local).strftime("%Y-%m-%d %H:%M")
    assert status == 200 and 'type="text" name="case_date"' in page and f'value="{shown}"' in page
    when = (running.service.clock.now() - timedelta(days=2)).astimezone(local).strftime("%Y-%m-%d %H:%M")
    form = {"title": "Llamó ayer", "description": "No anda", "contact_name": "Leo", "type": "incident"}
    status, page = await agent.post("/console/cases/new", {**form, "case_date": "2999-01-01T10:00"})
    assert status == 422 and 'id="error-date"' in page and "must not be in the future" in page
    status, page = await agent.post("/console/cases/new", {**form, "case_date": when})
    assert status == 200 and "Case created" in page
    [case] = await running.service.cases.list_cases()
    assert datetime.fromisoformat(case["created_at"]).astimezone(local).strftime("%Y-%m-%d %H:%M") == when
    # Another agent's profile time zone is theirs: what they type is read in it.
    status, _ = await agent.post("/console/profile/locale", {"language": "es", "timezone": "Asia/Tokyo"})
    assert status == 200
    tokyo = (running.service.clock.now() - timedelta(days=1)).astimezone(ZoneInfo("Asia/Tokyo"))
    status, page = await agent.post("/console/cases/new", {**form, "title": "Desde Tokio",
                                                           "case_date": tokyo.strftime("%Y-%m-%dT%H:%M")})
    assert status == 200
    [mine] = [c for c in await running.service.cases.list_cases() if c["title"] == "Desde Tokio"]
    assert datetime.fromisoformat(mine["created_at"]) == tokyo.replace(second=0, microsecond=0)
