"""The manager panel and the commission scores, with surveys driven into every state:
executed in chat-less manual runs, paused for lack of a channel, expired unanswered."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from posventa.core.errors import InvalidTransition, ValidationError
from posventa.core.persistence.schema import outbox, rule_instances
from posventa.core.surveys import PanelFilter
from tests.core.surveys.conftest import sale

OPENS = datetime(2026, 3, 9, 3, 0, tzinfo=UTC)
CLOSES = datetime(2026, 3, 12, 3, 0, tzinfo=UTC)


async def _week_ids(db) -> dict[str, int]:
    from posventa.core.persistence.schema import sales

    async with db.engine.connect() as conn:
        rows = await conn.execute(select(sales.c.external_id, rule_instances.c.id)
                                  .join(sales, sales.c.id == rule_instances.c.sale_id)
                                  .where(rule_instances.c.window_start == OPENS))
        return {r.external_id: r.id for r in rows}


def _answers(attention: str, recommend: str, working: str) -> list[dict]:
    return [{"question": "attention", "score": attention}, {"question": "recommend", "score": recommend},
            {"question": "working", "score": working}]


async def test_panel_sections_filters_manual_runs_and_seller_scores(surveys, db, clock):
    await surveys.sales.record_many([
        sale("S1", seller="marta", telegram_id="1"), sale("S2", seller="marta", phone="+54 11 5555 0000"),
        sale("S3", seller="pedro", email="s3@example.com"), sale("S4", seller="pedro", product="LIC", email="s4@x.com"),
        sale("S5", seller="pedro", telegram_id="5"),
    ])
    clock.current = OPENS
    report = await surveys.scheduler.tick()
    assert (report.opened, report.unreachable) == (3, 1)  # S2 has only a phone: paused for an operator
    week = await _week_ids(db)

    runner = surveys.runner
    with pytest.raises(ValidationError, match="'carla' is not an operator"):
        await runner.record_answers(week["S1"], _answers("5", "10", "yes"), operator="carla")
    with pytest.raises(ValidationError, match="score must be one of 1, 2, 3, 4, 5"):
        await runner.record_answers(week["S1"], [{"question": "attention", "score": "7"}], operator="ana")
    with pytest.raises(ValidationError, match="not a question of this survey"):
        await runner.record_answers(week["S1"], [{"question": "nope", "score": "1"}], operator="ana")
    done = await runner.record_answers(week["S1"], _answers("5", "diez", "yes"), operator="ana")
    assert done["status"] == "executed" and done["executed_by"] == "ana" and done["total_score"] == 300
    assert {a["answered_by"] for a in done["answers"]} == {"operator:ana"}
    with pytest.raises(InvalidTransition, match="already executed"):
        await runner.record_answers(week["S1"], _answers("1", "1", "no"), operator="ana")
    # A partial manual run pauses the chat (the bot must not ask what the operator already has).
    partial = await runner.record_answers(week["S3"], [{"question": "attention", "score": 1}], operator="beto")
    assert partial["status"] == "paused" and len(partial["answers"]) == 1
    await runner.record_answers(week["S3"], _answers("1", "7", "no"), operator="beto")  # -100 + 0 - 100
    await runner.record_answers(week["S5"], _answers("4", "9", "yes"), operator="beto")  # 50 + 80 + 100

    clock.current = OPENS + timedelta(days=1)
    panel = await surveys.panel.panel(PanelFilter(operator="ana"))
    assert panel["counts"] == {"my_rules": 1, "executed": 3, "not_executed": 1, "inconsistencies": 0}
    [mine] = panel["items"]["my_rules"]
    assert (mine["sale"], mine["status"], mine["channel"], mine["rule"]) == ("S2", "paused", None, "week")
    assert {i["sale"] for i in panel["items"]["executed"]} == {"S1", "S3", "S5"}
    carla = await surveys.panel.panel(PanelFilter(operator="carla"))
    assert carla["counts"] == {"my_rules": 0, "executed": 0, "not_executed": 0, "inconsistencies": 0}
    nobody = await surveys.panel.panel(PanelFilter(operator="zoe"))
    assert sum(nobody["counts"].values()) == 0

    # The window of S2 ends unanswered: an inconsistency.
    clock.current = CLOSES
    with pytest.raises(InvalidTransition, match="expired"):
        await runner.record_answers(week["S2"], _answers("3", "5", "yes"), operator="ana")
    assert (await surveys.scheduler.tick()).expired == 1
    panel = await surveys.panel.panel(PanelFilter(operator="beto"), section="inconsistencies")
    assert panel["counts"] == {"my_rules": 0, "executed": 3, "not_executed": 1, "inconsistencies": 1}
    assert [(i["sale"], i["status"]) for i in panel["items"]["inconsistencies"]] == [("S2", "expired")]
    assert list(panel["items"]) == ["inconsistencies"]

    # Filters.
    by_seller = await surveys.panel.panel(PanelFilter(seller="pedro"), section="executed")
    assert {i["sale"] for i in by_seller["items"]["executed"]} == {"S3", "S5"}
    assert (await surveys.panel.panel(PanelFilter(product="LIC")))["counts"]["executed"] == 0
    rules = {r["name"]: r["id"] for r in await surveys.catalog.list_rules()}
    assert (await surveys.panel.panel(PanelFilter(rule_id=rules["month"])))["counts"]["executed"] == 0
    assert (await surveys.panel.panel(PanelFilter(date_from=date(2026, 3, 3))))["counts"]["executed"] == 0
    assert (await surveys.panel.panel(PanelFilter(date_to=date(2026, 3, 2))))["counts"]["executed"] == 3
    with pytest.raises(ValidationError, match="date_from is after date_to"):
        PanelFilter(date_from=date(2026, 3, 3), date_to=date(2026, 3, 1))
    with pytest.raises(ValidationError, match="section must be one of"):
        await surveys.panel.panel(PanelFilter(), section="bogus")

    # Commission: the three formulas.
    scores = {r["seller"]: r for r in await surveys.panel.seller_scores(PanelFilter())}
    assert scores["marta"] == {"seller": "marta", "surveys": 1, "sum": 300, "average": 300,
                               "normalized_average": 100, "detractors": 0, "detractors_closed": 0}
    pedro = scores["pedro"]
    assert (pedro["surveys"], pedro["sum"], pedro["average"]) == (2, 30, 15)
    # Pedro's -200 survey had detractor answers: one complaint case, still open.
    assert (pedro["detractors"], pedro["detractors_closed"]) == (1, 0)
    assert pedro["normalized_average"] == pytest.approx(((-200 / 3) + (230 / 3)) / 2, abs=1e-3)
    assert await surveys.panel.seller_scores(PanelFilter(date_from=date(2026, 3, 3))) == []
    assert [r["seller"] for r in await surveys.panel.seller_scores(PanelFilter(operator="ana"))] == ["marta", "pedro"]
    text = surveys.panel.seller_scores_csv(list(scores.values()))
    assert text.splitlines()[0] == "seller,surveys,sum,average,normalized_average,detractors,detractors_closed"

    # CSV export: every section, a row per survey, in bounded batches.
    chunks = [c async for c in surveys.panel.export_csv(PanelFilter(operator="ana"))]
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert sorted((r["section"], r["sale"]) for r in rows) == [
        ("executed", "S1"), ("executed", "S3"), ("executed", "S5"), ("inconsistencies", "S2"),
        ("not_executed", "S2")]


async def test_resume_a_paused_survey_in_chat(surveys, db, clock):
    await surveys.sales.record_many([sale("P1", telegram_id="77")])
    clock.current = OPENS
    await surveys.scheduler.tick()
    [iid] = (await _week_ids(db)).values()
    await surveys.runner.record_answers(iid, [{"question": "attention", "score": "3"}], operator="ana")
    resumed = await surveys.runner.resume(iid, operator="beto")
    assert resumed["status"] == "open" and resumed["channel"] == "telegram"
    async with db.engine.connect() as conn:
        last = (await conn.execute(select(outbox.c.payload).order_by(outbox.c.id.desc()).limit(1))).scalar_one()
    assert last["text"].startswith("Retomamos la encuesta") and "(2/3)" in last["text"]
    with pytest.raises(InvalidTransition, match="only a paused survey"):
        await surveys.runner.resume(iid, operator="beto")


async def test_a_sale_with_no_channel_waits_for_a_phone_call(surveys, db, clock):
    await surveys.sales.record_many([sale("N1", phone="123")])
    clock.current = OPENS - timedelta(seconds=1)
    [iid] = (await _week_ids(db)).values()
    with pytest.raises(InvalidTransition, match="opens on"):
        await surveys.runner.record_answers(iid, _answers("5", "10", "yes"), operator="ana")


@pytest.mark.parametrize("processes", [3])
async def test_concurrent_ticks_never_double_send(surveys, db, clock, database_url, processes):
    """Several serve processes tick at the same moment: each customer gets exactly one
    first question (FOR UPDATE SKIP LOCKED on PostgreSQL, one writer on SQLite)."""
    from posventa.core.config import SurveysConfig
    from posventa.core.outgoing import Outgoing
    from posventa.core.persistence import Database
    from posventa.core.surveys import Surveys

    await surveys.sales.record_many(
        [sale(f"C{i}", telegram_id=str(9000 + i // 2), closed_at=f"2026-03-0{1 + i % 2}") for i in range(120)])
    clock.current = OPENS + timedelta(days=1)
    dbs = [Database(database_url) for _ in range(processes)]
    try:
        others = [Surveys.build(db=d, outgoing=Outgoing(email_domain="example.com", max_attempts=5), clock=clock,
                                config=SurveysConfig(), default_language="es") for d in dbs]
        for s in others:
            s.scheduler._batch = 7  # small batches: many interleavings
        import asyncio

        reports = await asyncio.gather(*(s.scheduler.tick() for s in others))
    finally:
        for d in dbs:
            await d.dispose()
    assert sum(r.opened for r in reports) == 60
    async with db.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(outbox))).scalar_one() == 60
        per_contact = (await conn.execute(
            select(rule_instances.c.contact_id, func.count()).where(rule_instances.c.status == "open")
            .group_by(rule_instances.c.contact_id))).all()
    assert len(per_contact) == 60 and {n for _, n in per_contact} == {1}
