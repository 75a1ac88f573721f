"""The per-activity counts (core/case_counts.py) stay exactly what grouping the cases
table would say, whichever way cases are opened, moved, closed, reopened or removed, and
folding the tally (alone, twice at once, or while cases are written) changes no count."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest
from sqlalchemy import delete, func, select, text, update

from posventa.core.case_counts import TallyFolder
from posventa.core.domain import ChannelName, InboundMessage, ThreadHints
from posventa.core.persistence import Database
from posventa.core.persistence.migrate import upgrade
from posventa.core.persistence.schema import case_activity_tally, cases
from posventa.service import Service
from tests.support import API_TOKEN, FakeClock, make_config, pg_available, require_or_skip, throwaway_pg_database


@pytest.fixture
async def running(database_url, tmp_path):
    service = Service(make_config(database_url, tmp_path), clock=FakeClock(datetime(2026, 12, 8, 13, 0, tzinfo=UTC)))
    async with service:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.bound_port}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
            yield service, http


async def grouped(db: Database) -> dict[str, int]:
    """What the counts must be: the cases table grouped by activity, every activity named."""
    async with db.engine.connect() as conn:
        rows = dict((await conn.execute(select(cases.c.activity, func.count()).group_by(cases.c.activity))).all())
    return {a: rows.get(a, 0) for a in ("preliminary_analysis", "derived", "answer_sent", "closed")}


async def tally_rows(db: Database) -> int:
    async with db.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(case_activity_tally))).scalar_one()


async def write(service: Service, n: int, *, reply_to: tuple[int, int] | None = None) -> int:
    """Customer ``n`` opens a case, or with ``reply_to`` (customer, case) writes in it."""
    who, case = reply_to if reply_to else (n, None)
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id=f"<m{n}@cliente.example>", sender=f"c{who}@cliente.example",
        text="La impresora no imprime", subject=f"Re: [#{case}] Consulta" if case else f"Consulta {n}",
        language="es", thread=ThreadHints(case_number=case) if case else ThreadHints()))
    assert receipt.case_number is not None
    return receipt.case_number


async def act(http, number: int, activity: str, **extra) -> None:
    async with http.post(f"/api/v1/cases/{number}/activity", json={"activity": activity, "agent": "ana", **extra}) as r:
        assert r.status == 200, await r.text()


async def test_counts_follow_every_change_of_activity(running):
    service, http = running
    db = service.db

    async def check() -> None:
        truth = await grouped(db)
        assert await service.cases.activity_counts() == truth
        async with http.get("/api/v1/cases") as r:
            assert (await r.json())["counts"] == truth

    await check()
    numbers = [await write(service, n) for n in range(6)]
    await check()
    for number in numbers:
        async with http.patch(f"/api/v1/cases/{number}", json={"type": "request", "agent": "ana"}) as r:
            assert r.status == 200
    await act(http, numbers[0], "derived", sector="Taller")
    await act(http, numbers[1], "answer_sent")
    await act(http, numbers[2], "answer_sent")
    await act(http, numbers[2], "closed")
    await act(http, numbers[3], "closed")
    await check()
    # The customer answers a case waiting for them (back to analysis) and writes again in a
    # closed one (reopened).
    assert await write(service, 10, reply_to=(1, numbers[1])) == numbers[1]
    assert await write(service, 11, reply_to=(3, numbers[3])) == numbers[3]
    await check()
    # Rows changed or removed by hand: a write to the same activity changes nothing, a
    # change of several rows at once and a removal are counted.
    async with db.transaction() as conn:
        await conn.execute(update(cases).where(cases.c.id == numbers[4]).values(activity="preliminary_analysis"))
        await conn.execute(update(cases).where(cases.c.id.in_(numbers[4:])).values(activity="closed"))
        await conn.execute(delete(cases).where(cases.c.id == numbers[5]))
    await check()

    before = await service.cases.activity_counts()
    removed = await TallyFolder(db=db).fold()
    assert removed > 4 and await tally_rows(db) == sum(1 for n in before.values() if n)
    assert await TallyFolder(db=db).fold() == 0  # already folded: nothing to do
    await check()
    # And counting goes on from the folded rows.
    await write(service, 20)
    await check()


async def test_folds_at_once_and_during_writes_keep_the_counts(running, database_url):
    """Two processes fold now and then while the inbox writes: no row counted twice or lost."""
    service, _ = running
    db = service.db
    other = Database(database_url)
    try:
        folders = [TallyFolder(db=db), TallyFolder(db=other)]
        for n in range(4):
            await write(service, n)
        writes = asyncio.gather(*(write(service, n) for n in range(100, 130)))
        await asyncio.gather(writes, *(f.fold() for f in folders), *(f.fold() for f in reversed(folders)))
        assert await service.cases.activity_counts() == await grouped(db)
        await asyncio.gather(*(f.fold() for f in folders))
        assert await service.cases.activity_counts() == await grouped(db)
        assert await tally_rows(db) == 1  # every case in analysis: one row left
    finally:
        await other.dispose()


async def test_the_periodic_job_is_wired(running):
    service, _ = running
    job = next(j for j in service.periodic_jobs() if j.name == "case-counts")
    for n in range(3):
        await write(service, n)
    assert await tally_rows(service.db) > 1
    assert await job.run_once() is True
    assert await tally_rows(service.db) == 1


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def before_tally_url(request, tmp_path):
    """A database at the revision before the tally, with cases in it."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        yield url
        return
    require_or_skip(pg_available(), "PostgreSQL is not reachable on 127.0.0.1:5432")
    async with throwaway_pg_database() as url:
        yield url


async def test_the_migration_counts_the_cases_already_there(before_tally_url):
    db = Database(before_tally_url)
    try:
        await upgrade(db, "i20_calendars")
        now = datetime(2026, 12, 7, tzinfo=UTC)
        async with db.transaction() as conn:
            await conn.execute(text("INSERT INTO contacts (id, name, created_at) VALUES (1, 'Ana', :n)"), {"n": now})
            for i, activity in enumerate(["closed", "closed", "closed", "derived", "preliminary_analysis"]):
                await conn.execute(text(
                    "INSERT INTO cases (created_at, updated_at, contact_id, case_type, title, description, channel, "
                    "language, activity, budget_mode, reply_token, self_served, sla_paused_minutes) VALUES "
                    "(:n, :n, 1, 'request', 't', 'd', 'email', 'es', :a, 'not_used', :tok, false, 0)"),
                    {"n": now, "a": activity, "tok": f"tok{i}"})
        await upgrade(db)
        from posventa.core.case_counts import activity_counts

        async with db.engine.connect() as conn:
            assert await activity_counts(conn) == {"preliminary_analysis": 1, "derived": 1, "answer_sent": 0,
                                                   "closed": 3}
    finally:
        await db.dispose()
