"""Two serve processes on one PostgreSQL database record detractor answers to the same
surveys at the same moment (and one request is retried): every survey ends with exactly
one complaint case, holding every answer.

Both processes lock the survey's row before they look for its case, and
``cases.survey_instance_id`` is unique underneath: a second case cannot be stored."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import func, select

from posventa.core.config import SurveysConfig
from posventa.core.outgoing import Outgoing
from posventa.core.persistence.schema import case_events, cases, categories, rule_instances
from posventa.core.ports import SystemClock
from posventa.core.surveys import Surveys
from tests.intake.webchat.test_survey_detractor_e2e import CATALOG
from tests.support import API_TOKEN

pytestmark = pytest.mark.postgres  # skipped without PostgreSQL (see conftest.py)

SURVEYS = 12


async def test_two_processes_answering_one_survey_open_one_case(cluster, db):
    surveys = Surveys.build(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=3),
                            clock=SystemClock(), config=SurveysConfig())
    await surveys.catalog.import_toml(CATALOG)
    today = datetime.now(ZoneInfo(SurveysConfig().timezone)).date().isoformat()
    _, errors = await surveys.sales.record_many([
        {"external_id": f"PG-{i}", "product": "PRN", "seller": "marta", "closed_at": today,
         "customer": {"name": f"Cliente {i}", "phone": f"555{i:04d}"}} for i in range(SURVEYS)])
    assert errors == []
    async with db.engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(select(rule_instances.c.id).order_by(rule_instances.c.id))]
    assert len(ids) == SURVEYS

    a = cluster.spawn("a", surveys={"enabled": True, "tick_seconds": 3600})
    b = cluster.spawn("b", surveys={"enabled": True, "tick_seconds": 3600})
    await cluster.wait_up(a, b)

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        async def answer(node, iid: int, question: str, score: str) -> int:
            async with http.post(f"{node.base}/api/v1/surveys/instances/{iid}/answers",
                                 json={"operator": "ana", "answers": [{"question": question, "score": score}]}) as r:
                return r.status

        # Per survey, at once: process A records one detractor answer, process B the
        # other, and B's request arrives a second time (a client retrying).
        statuses = await asyncio.gather(*(
            call for iid in ids for call in (answer(a, iid, "attention", "1"), answer(b, iid, "working", "no"),
                                             answer(b, iid, "working", "no"))))
    # A retry that lands after the survey completed is refused (409); nothing else fails.
    assert set(statuses) <= {200, 409} and statuses.count(200) >= 2 * SURVEYS

    async with db.engine.connect() as conn:
        per_survey = dict((await conn.execute(
            select(cases.c.survey_instance_id, func.count()).where(cases.c.survey_instance_id.in_(ids))
            .group_by(cases.c.survey_instance_id))).all())
        opened = (await conn.execute(select(func.count()).select_from(case_events).where(
            case_events.c.kind == "opened", case_events.c.actor == "survey"))).scalar_one()
        descriptions = [r[0] for r in await conn.execute(select(cases.c.description)
                                                         .where(cases.c.survey_instance_id.in_(ids)))]
        statuses_now = {r[0] for r in await conn.execute(select(rule_instances.c.status))}
        category_names = sorted(r[0] for r in await conn.execute(select(categories.c.name)))
    assert per_survey == {iid: 1 for iid in ids}
    assert opened == SURVEYS
    assert all("[attention]" in d and "[working]" in d for d in descriptions)
    assert statuses_now == {"executed"}
    assert category_names == ["Post-sale", "Survey"]  # created once, however many cases raced
