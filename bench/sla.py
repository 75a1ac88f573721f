"""SLA queries at scale, on SQLite and PostgreSQL: the overdue list (``?overdue=true``) and
the due-sorted inbox (``?sort=due``, open cases) through ``CaseService.list_cases``, p50/p95
over repeated calls, and one SLA watch sweep (warnings and breaches, ``AgentNotifier.sweep``)
over the open cases. Prints one JSON object.

The issue's figures are for 1,000,000 cases with 50,000 open (p95 < 30 ms; sweep < 1 s):

    .venv/bin/python bench/sla.py --cases 1000000 --open 50000

Small sizes (the default) check the plans and the code paths on a shared machine.
"""

from __future__ import annotations

# Scripts run from bench/ get bench/ first on sys.path, where email.py would shadow the
# standard library's email package: drop it (imports below come from the repo root).
import sys as _sys
from pathlib import Path as _Path

_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from core.cases import CaseFilter, CaseService  # noqa: E402
from core.notifications import AgentNotifier  # noqa: E402
from core.outgoing import Outgoing  # noqa: E402
from core.persistence import Database, upgrade  # noqa: E402
from core.persistence.schema import agent_states, contacts, users  # noqa: E402
from core.persistence.schema import cases as cases_table  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW


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
            # Open cases: due from 2 days ago to 5 days ahead (a few percent overdue).
            due = NOW + timedelta(minutes=rng.randint(-2 * 1440, 5 * 1440)) if is_open else None
            rows.append({
                "created_at": NOW - timedelta(days=30), "updated_at": NOW - timedelta(minutes=i % 5000),
                "contact_id": contact_id, "case_type": "request", "title": f"case {i}", "description": "bench",
                "channel": "email", "language": "es", "activity": "preliminary_analysis" if is_open else "closed",
                "budget_mode": "not_used", "reply_token": secrets.token_urlsafe(18), "self_served": False,
                "sla_policy": "default", "due_at": due, "due_target": "resolution" if is_open else None,
                "resolution_due_at": due, "sla_paused_minutes": 0.0,
                "assigned_agent": f"agent{i % 3}" if is_open else None,
            })
        async with db.transaction() as conn:
            await conn.execute(insert(cases_table), rows)
    if not db.is_sqlite:
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE cases")


async def timed(fn, repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2),
            "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 2)}


async def run_one(url: str, args) -> dict:
    db = Database(url)
    try:
        await upgrade(db)
        t0 = time.perf_counter()
        await fill(db, args.cases, args.open)
        fill_s = time.perf_counter() - t0
        service = CaseService(db=db, outgoing=Outgoing(email_domain="bench.example", max_attempts=3),
                              clock=FixedClock())
        overdue = await timed(lambda: service.list_cases(CaseFilter(overdue=True, sort="due", limit=50)), args.repeat)
        inbox = await timed(lambda: service.list_cases(CaseFilter(open_only=True, sort="due", limit=51)), args.repeat)
        notifier = AgentNotifier(db=db, outgoing=Outgoing(email_domain="bench.example", max_attempts=3),
                                 clock=FixedClock(), public_url="http://x", language="es", tz=ZoneInfo("UTC"))
        t0 = time.perf_counter()
        warned, breached = await notifier.sweep(timedelta(minutes=30))
        first_sweep = time.perf_counter() - t0
        t0 = time.perf_counter()
        await notifier.sweep(timedelta(minutes=30))
        steady_sweep = time.perf_counter() - t0
    finally:
        await db.dispose()
    return {"cases": args.cases, "open": args.open, "fill_s": round(fill_s, 1),
            "overdue_list": overdue, "due_sorted_inbox": inbox,
            "sweep_first_s": round(first_sweep, 3), "sweep_first_warned": warned, "sweep_first_breached": breached,
            "sweep_steady_s": round(steady_sweep, 3),
            "meets_targets": overdue["p95_ms"] < 30 and inbox["p95_ms"] < 30 and steady_sweep < 1.0}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--open", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    out: dict[str, object] = {"benchmark": "sla"}
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            out["sqlite"] = await run_one(f"sqlite+aiosqlite:///{tmp}/bench.db", args)
    if args.only in (None, "postgres"):
        import asyncpg

        name = f"pv_bench_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        try:
            out["postgres"] = await run_one(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", args)
        finally:
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
