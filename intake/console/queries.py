"""Read-only queries only the console needs (the rest comes from ``CaseService``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from posventa.core.persistence import Database
from posventa.core.persistence.schema import (
    attachments,
    cases,
    categories,
    messages,
    products,
    rule_instances,
    survey_answers,
    survey_questions,
)


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    id: int
    case_id: int | None
    filename: str
    content_type: str
    size: int
    sha256: str


async def attachment(db: Database, attachment_id: int) -> StoredAttachment | None:
    async with db.engine.connect() as conn:
        row = (await conn.execute(
            select(attachments, messages.c.case_id).join(messages, messages.c.id == attachments.c.message_id)
            .where(attachments.c.id == attachment_id))).first()
    if row is None:
        return None
    return StoredAttachment(id=row.id, case_id=row.case_id, filename=row.filename, content_type=row.content_type,
                            size=row.size, sha256=row.sha256)


async def known_sectors(db: Database, limit: int = 200) -> list[str]:
    """Sectors already used, offered as suggestions (the field stays free text)."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(cases.c.sector).where(cases.c.sector.is_not(None))
                                  .group_by(cases.c.sector).order_by(cases.c.sector).limit(limit))
        return [r[0] for r in rows]


async def cases_per_type_and_category(db: Database, *, since: datetime | None = None,
                                      until: datetime | None = None) -> dict[str, Any]:
    """Counts for the manager's chart: {type: {category name: n}}, of the cases dated in
    [since, until) (a case's date is ``created_at``: for one opened by hand, the date the
    agent gave)."""
    q = (select(cases.c.case_type, categories.c.name, func.count())
         .select_from(cases.outerjoin(categories, categories.c.id == cases.c.category_id))
         .group_by(cases.c.case_type, categories.c.name))
    if since is not None:
        q = q.where(cases.c.created_at >= since)
    if until is not None:
        q = q.where(cases.c.created_at < until)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    out: dict[str, dict[str, int]] = {}
    for case_type, category, count in rows:
        out.setdefault(case_type, {})[category or "(no category)"] = count
    return out


#: Survey instance statuses as stored (core/surveys/conversation.py).
_EXECUTED = "executed"
#: A chart over years of history would read every row; the chart is for recent weeks.
MAX_CHART_DAYS = 366
MAX_CHART_ROWS = 200_000


async def survey_outcomes_by_day(db: Database, *, tz: ZoneInfo, since: datetime, until: datetime,
                                 now: datetime) -> list[dict[str, Any]]:
    """Per local day in [since, until): surveys executed that day, and surveys whose
    window ended that day without being executed (expired, the inconsistencies)."""
    ri = rule_instances.c
    async with db.engine.connect() as conn:
        executed = (await conn.execute(select(ri.executed_at).where(
            ri.status == _EXECUTED, ri.executed_at >= since, ri.executed_at < until).limit(MAX_CHART_ROWS))).scalars()
        executed_days = [t.astimezone(tz).date() for t in executed]
        expired = (await conn.execute(select(ri.window_end).where(
            ri.status != _EXECUTED, ri.window_end >= since, ri.window_end < min(until, now))
            .limit(MAX_CHART_ROWS))).scalars()
        expired_days = [t.astimezone(tz).date() for t in expired]
    first, last = since.astimezone(tz).date(), (until - timedelta(microseconds=1)).astimezone(tz).date()
    days = [first + timedelta(days=i) for i in range(min((last - first).days + 1, MAX_CHART_DAYS))]
    ex, exp = Counter(executed_days), Counter(expired_days)
    return [{"day": d.isoformat(), "executed": ex.get(d, 0), "expired": exp.get(d, 0)} for d in days]


async def score_distribution(db: Database) -> list[dict[str, Any]]:
    """For each question, how many answers each score got, in the scale's order."""
    async with db.engine.connect() as conn:
        questions = {q.id: q for q in await conn.execute(select(survey_questions))}
        rows = (await conn.execute(select(survey_answers.c.question_id, survey_answers.c.score, func.count())
                                   .group_by(survey_answers.c.question_id, survey_answers.c.score))).all()
    counts: dict[int, dict[str, int]] = {}
    for qid, score, n in rows:
        counts.setdefault(qid, {})[score] = n
    out = []
    for qid, q in sorted(questions.items(), key=lambda kv: kv[1].code):
        weights = {str(k): v for k, v in dict(q.weights or {}).items()}
        scores = list(weights) or sorted(counts.get(qid, {}))
        out.append({"code": q.code, "text": q.text_en or q.text_es, "scale": q.scale,
                    "scores": [{"score": s, "weight": weights.get(s), "count": counts.get(qid, {}).get(s, 0)}
                               for s in scores]})
    return out


async def product_codes(db: Database, *, limit: int = 1000) -> list[Any]:
    """The catalog's products (code, name) for the Budget tab's suggestions."""
    async with db.engine.connect() as conn:
        return (await conn.execute(select(products.c.code, products.c.name).order_by(products.c.code)
                                   .limit(limit))).all()
