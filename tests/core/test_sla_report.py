"""The SLA report on both databases: known cases written straight into the table, with
every expected percentage, median and p90 worked out by hand below; then the figures
core.sla records when an agent replies and closes, through a running Service and the
API (JSON and CSV)."""

from __future__ import annotations

import csv
import dataclasses
import io
import secrets
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import insert

from posventa.core.config import CalendarConfig
from posventa.core.domain import ChannelName, InboundMessage, ThreadHints
from posventa.core.errors import ValidationError
from posventa.core.persistence.schema import cases, contacts
from posventa.core.sla_report import SlaReportFilter, SlaReports, report_csv
from posventa.service import Service
from tests.support import API_TOKEN, FakeClock, RecordingChannel, make_config

NOW = datetime(2026, 12, 14, 12, 0, tzinfo=UTC)
PAST = NOW - timedelta(days=1)
FUTURE = NOW + timedelta(days=1)
PERIOD = dict(since=date(2026, 11, 30), until=date(2026, 12, 13))


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    month = 11 if day >= 20 else 12
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# (agent, sector, created, first-response minutes, met, resolution minutes, met, open state)
# "open state" for a case not closed: which of its targets still run, and whether paused.
FIXTURES = [
    # ana: first responses 10 20 100 (week of 30 Nov) and 30 40 (week of 7 Dec); target 30.
    dict(agent="ana", sector="soporte", created=at(1), fr=(10, True), res=(200, True)),
    dict(agent="ana", sector="soporte", created=at(2), fr=(20, True), res=(500, False)),
    # Sunday 23:30 UTC: still the week of Monday 30 November.
    dict(agent="ana", sector="soporte", created=at(6, 23, 30), fr=(100, False), open=dict(resolution_due_at=FUTURE)),
    # Monday 00:10 UTC: the week of 7 December.
    dict(agent="ana", sector="soporte", created=at(7, 0, 10), fr=(30, True), res=(300, True)),
    # Open, resolution past due and not paused: missed already.
    dict(agent="ana", sector="soporte", created=at(8), fr=(40, False), open=dict(resolution_due_at=PAST)),
    # bruno: 15 on time; 45 under a policy without a first-response target (no met/missed).
    dict(agent="bruno", sector="ventas", created=at(9), fr=(15, True), open=dict(resolution_due_at=FUTURE)),
    # Paused (waiting for the customer) past the stored due time: pending, not missed.
    dict(agent="bruno", sector="ventas", created=at(10), fr=(45, None),
         open=dict(resolution_due_at=PAST, sla_paused_at=PAST)),
    # Nobody answered, first response past due: missed; resolution still within its time.
    dict(agent=None, sector=None, created=at(3), fr=None,
         open=dict(first_response_due_at=PAST, resolution_due_at=FUTURE)),
]
#: Not in the report: opened the day before the period; opened before SLAs (no policy).
LEFT_OUT = [
    dict(agent="ana", sector="soporte", created=at(29, 23, 59), fr=(999, False), res=(999, False)),
    dict(agent="ana", sector="soporte", created=at(5), fr=(999, False), res=(999, False), policy=None),
]


async def seed(db, fixtures) -> None:
    async with db.transaction() as conn:
        contact = (await conn.execute(insert(contacts).values(name="Ana Cliente", created_at=NOW)
                                      .returning(contacts.c.id))).scalar_one()
        for f in fixtures:
            row = dict(contact_id=contact, created_at=f["created"], updated_at=f["created"], case_type="request",
                       title="x", description="x", channel="email", language="es", sector=f["sector"],
                       assigned_agent=f["agent"], budget_mode="process", reply_token=secrets.token_hex(16),
                       sla_policy=f.get("policy", "default"), activity="closed" if "res" in f else "derived")
            if f["fr"] is not None:
                row.update(first_response_at=f["created"], first_response_minutes=f["fr"][0],
                           first_response_met=f["fr"][1])
            if "res" in f:
                row.update(closed_at=f["created"], resolution_minutes=f["res"][0], resolution_met=f["res"][1])
            row.update(f.get("open", {}))
            await conn.execute(insert(cases).values(**row))


@pytest.fixture
async def reports(db):
    await seed(db, FIXTURES + LEFT_OUT)
    return SlaReports(db=db)


def figures(row, target: str) -> tuple:
    t = row.target(target)
    return t.met, t.missed, t.achieved_percent, t.timed, t.median_minutes, t.p90_minutes


async def test_per_agent_and_total_figures_match_the_hand_computed_ones(reports):
    report = await reports.report(SlaReportFilter(**PERIOD, group_by="agent"), now=NOW)
    by = {r.group: r for r in report.rows}
    assert [r.group for r in report.rows] == ["ana", "bruno", None]  # most cases first
    assert [r.cases for r in report.rows] == [5, 2, 1]
    ana, bruno, nobody = by["ana"], by["bruno"], by[None]
    # ana, first response: met 10 20 30, missed 100 40 → 3/5 = 60 %. Sorted 10 20 30 40 100:
    # median = rank 3 = 30; p90 at (5-1)·0.9 = 3.6 → ranks 4 and 5: 40 + 0.6·(100-40) = 76.
    assert figures(ana, "first_response") == (3, 2, 60.0, 5, 30.0, 76.0)
    # ana, resolution: met 200 300, missed 500 and the open one past due → 2/4 = 50 %;
    # one open within its time is pending. Durations 200 300 500: median 300; p90 at
    # 2·0.9 = 1.8 → 300 + 0.8·(500-300) = 460.
    assert figures(ana, "resolution") == (2, 2, 50.0, 3, 300.0, 460.0)
    # bruno: one met, one without a target → 1/1 = 100 %; 15 and 45: median 30,
    # p90 at 0.9 → 15 + 0.9·30 = 42. Resolution: nothing decided (one within time, one paused).
    assert figures(bruno, "first_response") == (1, 0, 100.0, 2, 30.0, 42.0)
    assert figures(bruno, "resolution") == (0, 0, None, 0, None, None)
    assert figures(nobody, "first_response") == (0, 1, 0.0, 0, None, None)
    # Total: 8 cases; first response met 4, missed 3 → 57.14 %. Sorted 10 15 20 30 40 45
    # 100: median rank 4 = 30; p90 at 6·0.9 = 5.4 → 45 + 0.4·(100-45) = 67.
    assert report.total.group is None and report.total.cases == 8
    assert figures(report.total, "first_response") == (4, 3, 57.14, 7, 30.0, 67.0)
    assert figures(report.total, "resolution") == (2, 2, 50.0, 3, 300.0, 460.0)


async def test_per_week_the_monday_starts_it_in_utc(reports):
    report = await reports.report(SlaReportFilter(**PERIOD, group_by="week"), now=NOW)
    assert [(r.group, r.cases) for r in report.rows] == [("2026-11-30", 4), ("2026-12-07", 4)]
    first, second = report.rows
    # Week of 30 Nov: 10 met, 20 met, 100 missed, the unanswered one missed → 50 %;
    # durations 10 20 100: median 20, p90 at 1.8 → 20 + 0.8·80 = 84.
    assert figures(first, "first_response") == (2, 2, 50.0, 3, 20.0, 84.0)
    # Week of 7 Dec: 30 met, 40 missed, 15 met, 45 no target → 2/3 = 66.67 %; 15 30 40 45:
    # median at 1.5 → 30 + 0.5·10 = 35; p90 at 2.7 → 40 + 0.7·5 = 43.5.
    assert figures(second, "first_response") == (2, 1, 66.67, 4, 35.0, 43.5)


async def test_per_sector_channel_and_type(reports):
    sectors = await reports.report(SlaReportFilter(**PERIOD, group_by="sector"), now=NOW)
    assert [(r.group, r.cases, r.first_response.achieved_percent) for r in sectors.rows] == [
        ("soporte", 5, 60.0), ("ventas", 2, 100.0), (None, 1, 0.0)]
    for grouping, name in (("channel", "email"), ("type", "request")):
        report = await reports.report(SlaReportFilter(**PERIOD, group_by=grouping), now=NOW)
        assert [r.group for r in report.rows] == [name]
        assert report.rows[0] == dataclasses.replace(report.total, group=name)


async def test_the_csv_has_a_line_per_group_and_the_total(reports):
    report = await reports.report(SlaReportFilter(**PERIOD, group_by="agent"), now=NOW)
    lines = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert [(line["row"], line["group"], line["cases"]) for line in lines] == [
        ("group", "ana", "5"), ("group", "bruno", "2"), ("group", "", "1"), ("total", "", "8")]
    assert (lines[0]["first_response_achieved_percent"], lines[0]["first_response_p90_minutes"],
            lines[1]["resolution_achieved_percent"]) == ("60.0", "76.0", "")


def test_a_bad_period_or_grouping_names_the_field():
    with pytest.raises(ValidationError) as e:
        SlaReportFilter(since=date(2026, 12, 2), until=date(2026, 12, 1))
    assert e.value.field == "to"
    with pytest.raises(ValidationError) as e:
        SlaReportFilter(since=date(2025, 1, 1), until=date(2026, 1, 2))
    assert e.value.field == "from"
    with pytest.raises(ValidationError) as e:
        SlaReportFilter(since=date(2026, 1, 1), until=date(2026, 1, 1), group_by="month")
    assert e.value.field == "group_by"


# --- recorded by core.sla as agents work, read through the API ---------------------------

BA = ZoneInfo("America/Argentina/Buenos_Aires")


def ba(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=BA).astimezone(UTC)


@pytest.fixture
async def running(database_url, tmp_path):
    # 09:00-18:00 weekdays in Buenos Aires, Monday 7 December a holiday.
    clock = FakeClock(ba(4, 17, 30))  # Friday
    config = make_config(database_url, tmp_path, sla={"first_response_minutes": 120, "next_response_minutes": 0,
                                                      "resolution_minutes": 9 * 60 * 2})
    config = dataclasses.replace(config, calendars=(CalendarConfig(name="default", timezone=BA.key,
                                                                   closed_days=("2026-12-07",)),))
    service = Service(config, clock=clock)
    service.channels[ChannelName.EMAIL] = RecordingChannel(ChannelName.EMAIL)
    async with service:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            yield service, http, clock


async def write(service: Service, n: int, **kw) -> int:
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=f"<r{n}@cliente.example>", sender="ana@cliente.example",
        text="No imprime", subject=kw.pop("subject", f"Consulta {n}"), language="es", **kw))
    assert receipt.case_number is not None
    return receipt.case_number


async def call(http, method: str, path: str, body: dict | None = None, status: int = 200):
    async with http.request(method, f"/api/v1{path}", json=body) as r:
        answer = await r.json()
        assert r.status == status, answer
        return answer


async def test_reply_and_close_record_business_minutes_net_of_the_customers_wait(running):
    service, http, clock = running
    first, second = await write(service, 1), await write(service, 2)
    for number in (first, second):
        await call(http, "PATCH", f"/cases/{number}", {"type": "request", "agent": "ana"})
    # Tuesday 10:00: Friday's last 30 business minutes and Tuesday's first 60 → 90 minutes,
    # within the 120-minute target (due Tuesday 10:30).
    clock.current = ba(8, 10)
    for number in (first, second):
        await call(http, "POST", f"/cases/{number}/reply", {"text": "Reinicie", "agent": "ana"}, status=202)
        await call(http, "POST", f"/cases/{number}/activity", {"activity": "answer_sent", "agent": "ana"})
    # The first case's customer answers Wednesday 12:00 (11 business hours waited, not
    # counted) and it is closed at 13:00: 30 + 540 (Tuesday) + 240 (Wednesday) - 660 = 150.
    clock.current = ba(9, 12)
    await write(service, 3, thread=ThreadHints(case_number=first), subject=f"Re: [#{first}] Consulta 1")
    clock.current = ba(9, 13)
    await call(http, "POST", f"/cases/{first}/activity", {"activity": "closed", "agent": "ana"})
    # The second is closed Thursday 12:00 while still waiting for the customer: the wait
    # since Tuesday 10:00 is not the team's time, so it took 90 minutes and is on time
    # although its stored due time (Wednesday 17:30) has passed.
    clock.current = ba(10, 12)
    case = await call(http, "POST", f"/cases/{second}/activity", {"activity": "closed", "agent": "ana"})
    assert case["sla_breached"] is None

    report = await call(http, "GET", "/reports/sla?from=2026-12-04&to=2026-12-10&group_by=agent")
    assert report["group_by"] == "agent" and report["from"] == "2026-12-04" and report["to"] == "2026-12-10"
    row = report["total"]
    assert row["cases"] == 2
    assert row["first_response"] == {"met": 2, "missed": 0, "achieved_percent": 100.0, "timed": 2,
                                     "median_minutes": 90.0, "p90_minutes": 90.0}
    # 90 and 150: median 120; p90 = 90 + 0.9·60 = 144.
    assert row["resolution"] == {"met": 2, "missed": 0, "achieved_percent": 100.0, "timed": 2,
                                 "median_minutes": 120.0, "p90_minutes": 144.0}
    assert [r["group"] for r in report["rows"]] == [None]  # nobody was assigned

    async with http.get("/api/v1/reports/sla?from=2026-12-04&to=2026-12-10", headers={"Accept": "text/csv"}) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        lines = list(csv.DictReader(io.StringIO(await r.text())))
    assert [(x["row"], x["resolution_median_minutes"]) for x in lines] == [("group", "120.0"), ("total", "120.0")]
    async with http.get("/api/v1/reports/sla?from=2026-12-04&to=2026-12-10&format=csv") as r:
        assert r.status == 200 and r.content_type == "text/csv"

    bad = await call(http, "GET", "/reports/sla?from=2026-12-10&to=2026-12-04", status=422)
    assert bad["field"] == "to"
    bad = await call(http, "GET", "/reports/sla?group_by=month", status=422)
    assert bad["field"] == "group_by"


# --- Prometheus gauges --------------------------------------------------------------------

async def test_metrics_show_the_report_per_dimension_computed_by_the_periodic_job(database_url, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    clock = FakeClock(NOW)
    # 15 days to Monday 14 December: from 30 November, as PERIOD (the 14th has no cases).
    config = make_config(database_url, tmp_path, sla={"report_metrics_days": 15, "report_refresh_seconds": 3600})
    async with Service(config, clock=clock) as service:
        job = next(j for j in service.periodic_jobs() if j.name == "sla-report")
        await seed(service.db, FIXTURES + LEFT_OUT)

        async def scrape() -> dict[tuple, float]:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{service.http.bound_port}/metrics") as r:
                    assert r.status == 200
                    text = await r.text()
            return {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for family in text_string_to_metric_families(text) for s in family.samples
                    if s.name.startswith(("posventa_sla_achieved", "posventa_sla_time", "posventa_sla_targets"))}

        def key(name: str, **labels: str) -> tuple:
            return name, tuple(sorted(labels.items()))

        ana = key("posventa_sla_achieved_percent", target="first_response", group_by="agent", group="ana")
        assert job.interval == 3600
        assert await job.run_once() is True  # a run, as the loop makes every report_refresh_seconds
        gauges = await scrape()
        # The figures of test_per_agent_and_total_figures_match_the_hand_computed_ones.
        assert gauges[ana] == 60.0
        assert gauges[key("posventa_sla_time_minutes", target="first_response", quantile="0.9", group_by="agent",
                          group="ana")] == 76.0
        assert gauges[key("posventa_sla_achieved_percent", target="first_response", group_by="total",
                          group="")] == 57.14
        assert gauges[key("posventa_sla_time_minutes", target="resolution", quantile="0.5", group_by="total",
                          group="")] == 300.0
        assert gauges[key("posventa_sla_targets", target="first_response", outcome="missed", group_by="sector",
                          group="soporte")] == 2
        assert gauges[key("posventa_sla_achieved_percent", target="first_response", group_by="channel",
                          group="email")] == 57.14
        # Nothing decided: no achievement series rather than a made-up number.
        assert key("posventa_sla_achieved_percent", target="resolution", group_by="agent",
                   group="bruno") not in gauges
        assert not any(dict(labels).get("group_by") == "week" for _, labels in gauges)

        # A scrape reads the figures kept: a new case shows at the job's next run.
        await seed(service.db, [dict(agent="ana", sector="soporte", created=at(11), fr=(50, False),
                                     open=dict(resolution_due_at=FUTURE))])
        assert (await scrape())[ana] == 60.0
        assert await job.run_once() is True
        assert (await scrape())[ana] == 50.0  # 3 of 6


async def test_a_reopened_case_counts_its_next_close(running):
    service, http, clock = running
    number = await write(service, 1)
    await call(http, "PATCH", f"/cases/{number}", {"type": "request", "agent": "ana"})
    clock.current = ba(8, 10)  # Tuesday: 30 + 60 business minutes
    await call(http, "POST", f"/cases/{number}/reply", {"text": "Listo", "agent": "ana"}, status=202)
    await call(http, "POST", f"/cases/{number}/activity", {"activity": "closed", "agent": "ana"})

    async def resolution() -> dict:
        return (await call(http, "GET", "/reports/sla?from=2026-12-04&to=2026-12-04"))["total"]["resolution"]

    assert await resolution() == {"met": 1, "missed": 0, "achieved_percent": 100.0, "timed": 1,
                                  "median_minutes": 90.0, "p90_minutes": 90.0}
    clock.current = ba(8, 11)
    await write(service, 2, thread=ThreadHints(case_number=number), subject=f"Re: [#{number}] Consulta 1")
    # Open again, within its resolution time (due Wednesday 17:30): pending.
    assert await resolution() == {"met": 0, "missed": 0, "achieved_percent": None, "timed": 0,
                                  "median_minutes": None, "p90_minutes": None}
    # Closed an hour later. The reopening started the resolution target again (core.sla
    # counts the time before it as paused), and the report measures as the target does.
    clock.current = ba(8, 12)
    await call(http, "POST", f"/cases/{number}/activity", {"activity": "closed", "agent": "ana"})
    assert (await resolution())["median_minutes"] == 60.0
