"""SLA queries at scale, on SQLite and PostgreSQL: the overdue list (``?overdue=true``) and
the due-sorted inbox (``?sort=due``, open cases) through ``CaseService.list_cases``, p50/p95
over repeated calls, and one SLA watch sweep (warnings and breaches, ``AgentNotifier.sweep``)
over the open cases. Prints one JSON object.

The issue's figures are for 1,000,000 cases with 50,000 open (p95 < 30 ms; sweep < 1 s):

    .venv/bin/python bench/sla.py --cases 1000000 --open 50000

Small sizes (the default) check the plans and the code paths on a shared machine.

A million cases take minutes to load: ``--keep NAME`` keeps the database (bench/support.py,
``kept_location``) and a later run with the same name and sizes measures it again without
loading. The sweeps record breaches, so on a kept database only the first run's first
sweep is a catch-up (``reused`` says which).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ is sys.path[0], and bench/email.py would shadow the standard
# library's email package: put the repo there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from sqlalchemy import func, insert, select  # noqa: E402

from bench.support import add_database_argument, bulk_insert, emit, machine_load, on_each_database, settle, timed_calls  # noqa: E402
from posventa.core.cases import CaseFilter, CaseService  # noqa: E402
from posventa.core.notifications import AgentNotifier  # noqa: E402
from posventa.core.outgoing import Outgoing  # noqa: E402
from posventa.core.persistence import Database  # noqa: E402
from posventa.core.persistence.schema import agent_states, contacts, users  # noqa: E402
from posventa.core.persistence.schema import cases as cases_table  # noqa: E402

# Revisions from before the counts' tally or the SLA report (bench/compare.py
# --same-scripts against e5b02a7): what they lack is neither filled nor timed.
try:
    from posventa.core.case_counts import TallyFolder
except ImportError:
    TallyFolder = None  # type: ignore[assignment,misc]
try:
    from posventa.core.sla_report import SlaReportFilter, SlaReports
except ImportError:
    SlaReports = None  # type: ignore[assignment,misc]

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


async def filled(db: Database, total: int, open_cases: int) -> bool:
    """Whether a kept database already holds this run's data."""
    async with db.engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(cases_table))).scalar_one()
        n_open = (await conn.execute(select(func.count()).select_from(cases_table)
                                     .where(cases_table.c.activity != "closed"))).scalar_one()
    if n and (n, n_open) != (total, open_cases):
        raise SystemExit(f"the kept database holds {n} cases, {n_open} open: use another --keep name")
    return n > 0


async def fill(db: Database, total: int, open_cases: int) -> None:
    rng = random.Random(20)
    async with db.transaction() as conn:
        contact_id = (await conn.execute(insert(contacts).values(name="bench", created_at=NOW)
                                         .returning(contacts.c.id))).scalar_one()
        for i in range(3):
            await conn.execute(insert(users).values(username=f"agent{i}", password_hash="x", role="agent",
                                                    active=True, created_at=NOW))
            await conn.execute(insert(agent_states).values(username=f"agent{i}", sectors="", available=True,
                                                           telegram_user_id=1000 + i))
    chunk = 5000
    for start in range(0, total, chunk):
        rows = []
        for i in range(start, min(total, start + chunk)):
            is_open = i >= total - open_cases
            # Cases in the order they came: the closed ones over two years up to a fortnight
            # ago, the open ones over the last fortnight.
            if is_open:
                created = NOW - timedelta(days=14) * (1 - (i - (total - open_cases)) / open_cases)
                updated = created + (NOW - created) * rng.random()
            else:
                created = NOW - timedelta(days=730) + timedelta(days=716) * (i / max(1, total - open_cases))
                updated = created + timedelta(minutes=rng.randint(10, 5 * 1440))
            # Open cases: due from 2 days ago to 5 days ahead (a few percent overdue).
            due = NOW + timedelta(minutes=rng.randint(-2 * 1440, 5 * 1440)) if is_open else None
            # How a closed case's targets ended (the SLA report reads them).
            first_minutes = None if is_open else round(rng.expovariate(1 / 120), 1)
            resolution_minutes = None if is_open else round(rng.expovariate(1 / 1440), 1)
            rows.append({
                "created_at": created, "updated_at": updated,
                "contact_id": contact_id, "case_type": "request", "title": f"case {i}", "description": "bench",
                "channel": "email", "language": "es", "activity": "preliminary_analysis" if is_open else "closed",
                "budget_mode": "not_used", "reply_token": secrets.token_urlsafe(18), "self_served": False,
                "sla_policy": "default", "due_at": due, "due_target": "resolution" if is_open else None,
                "resolution_due_at": due, "sla_paused_minutes": 0.0,
                "assigned_agent": f"agent{i % 3}" if is_open else None,
                "first_response_minutes": first_minutes,
                "first_response_met": None if first_minutes is None else first_minutes <= 240,
                "resolution_minutes": resolution_minutes,
                "resolution_met": None if resolution_minutes is None else resolution_minutes <= 2880,
                "closed_at": None if is_open else updated,
            })
            rows[-1] = {k: v for k, v in rows[-1].items() if k in cases_table.c}  # an older schema's columns
        await bulk_insert(db, cases_table, rows)
    await settle(db)


async def timed(db: Database, fn, repeat: int) -> dict[str, float]:
    await fn()  # warm-up: the first call prepares the statement and reads the pages in
    return await timed_calls(db, [fn] * repeat)


async def run_one(db: Database, args) -> dict:
    t0 = time.perf_counter()
    reused = await filled(db, args.cases, args.open)
    if not reused:
        await fill(db, args.cases, args.open)
    if TallyFolder is not None:
        # As the service's case-counts job does every minute: one tally row per activity.
        await TallyFolder(db=db).fold()
    fill_s = time.perf_counter() - t0
    service = CaseService(db=db, outgoing=Outgoing(email_domain="bench.example", max_attempts=3),
                          clock=FixedClock())
    load_at_start = machine_load()
    # The filters GET /api/v1/cases?overdue=true&sort=due and the console inbox (open cases,
    # nearest due first, a page of 50 and one more to know there is a next page) pass.
    overdue = await timed(db, lambda: service.list_cases(CaseFilter(overdue=True, sort="due", limit=50)), args.repeat)
    inbox = await timed(db, lambda: service.list_cases(CaseFilter(open_only=True, sort="due", limit=51)), args.repeat)
    # Both pages also show the count of cases per activity (CaseService.activity_counts).
    counts = await timed(db, service.activity_counts, args.repeat)
    # The SLA report over its default period (the last four weeks), in total and by week,
    # as the console's report page and the sla-report job's gauges compute it.
    report = report_weeks = None
    if SlaReports is not None:
        reports = SlaReports(db=db)
        period = SlaReportFilter.default(NOW.date())
        by_week = SlaReportFilter.default(NOW.date(), group_by="week")
        report = await timed(db, lambda: reports.report(period, now=NOW), args.report_repeat)
        report_weeks = await timed(db, lambda: reports.report(by_week, now=NOW), args.report_repeat)
    # The first sweep catches up with every target already past or near (a service that was
    # down); each later one is a tick a minute on: the few targets that came due meanwhile.
    sweep_clock = FixedClock()
    notifier = AgentNotifier(db=db, outgoing=Outgoing(email_domain="bench.example", max_attempts=3),
                             clock=sweep_clock, public_url="http://x", language="es", tz=ZoneInfo("UTC"))
    t0 = time.perf_counter()
    warned, breached = await notifier.sweep(timedelta(minutes=30))
    first_sweep = time.perf_counter() - t0
    steady, steady_told = [], 0
    for _ in range(args.sweeps):
        sweep_clock.current += timedelta(seconds=60)
        t0 = time.perf_counter()
        steady_told += sum(await notifier.sweep(timedelta(minutes=30)))
        steady.append(time.perf_counter() - t0)
    steady_sweep = max(steady, default=0.0)
    return {"cases": args.cases, "open": args.open, "fill_s": round(fill_s, 1), "reused": reused, "load_avg_at_measure_start": load_at_start,
            "overdue_list": overdue, "due_sorted_inbox": inbox, "activity_counts": counts,
            "sla_report_4_weeks": report, "sla_report_by_week": report_weeks,
            "sweep_first_s": round(first_sweep, 3), "sweep_first_warned": warned, "sweep_first_breached": breached,
            "sweep_steady_max_s": round(steady_sweep, 3), "sweeps_steady": len(steady),
            "sweeps_steady_told": steady_told,
            "meets_targets": overdue["p95_ms"] < 30 and inbox["p95_ms"] < 30 and max(first_sweep, steady_sweep) < 1.0}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--open", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--report-repeat", type=int, default=10, help="timed calls of each SLA report")
    parser.add_argument("--sweeps", type=int, default=5, help="steady-state sweeps timed after the first")
    add_database_argument(parser)
    parser.add_argument("--keep", metavar="NAME", help="keep the filled database under this name and reuse it "
                                                       "(bench.support.kept_location)")
    args = parser.parse_args()
    out: dict[str, object] = {"benchmark": "sla", "target": "list p95 < 30 ms, sweep < 1 s per tick"}
    out.update(await on_each_database(args.only, lambda db: run_one(db, args), keep=args.keep))
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
