"""Read-only views over several of core's tables that pages and reports show as they are
(the manager's charts, the case page's suggestions). Nothing here decides anything: the
rules live in the services (``CaseService``, ``core.surveys``) and only read here.

A core port: the console asks these instead of querying core's tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from posventa.core.persistence import Database
from posventa.core.persistence.schema import (
    cases,
    categories,
    contacts,
    products,
    rule_instances,
    survey_answers,
    survey_questions,
)

#: Survey instance statuses as stored (core/surveys/conversation.py).
_EXECUTED = "executed"
#: A chart over years of history would read every row; the chart is for recent weeks.
MAX_CHART_DAYS = 366
MAX_CHART_ROWS = 200_000


#: The chart's key for cases without a category (the console shows it translated).
NO_CATEGORY = "(no category)"


@dataclass(frozen=True, slots=True)
class ProductCode:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class DayOutcomes:
    #: The local day, ISO 8601.
    day: str
    executed: int
    expired: int


@dataclass(frozen=True, slots=True)
class ScoreCount:
    score: str
    #: The score's weight in the question's scale (None: a score the scale no longer has).
    weight: int | None
    count: int


@dataclass(frozen=True, slots=True)
class QuestionScores:
    code: str
    text: str
    scale: str
    scores: tuple[ScoreCount, ...]


class ReadModels:
    def __init__(self, *, db: Database) -> None:
        self._db = db

    async def known_sectors(self, limit: int = 200) -> list[str]:
        """Sectors already used, offered as suggestions (the field stays free text)."""
        async with self._db.reading() as conn:
            rows = await conn.execute(select(cases.c.sector).where(cases.c.sector.is_not(None))
                                      .group_by(cases.c.sector).order_by(cases.c.sector).limit(limit))
            return [r[0] for r in rows]

    async def erased_contacts(self, contact_ids: Iterable[int | None]) -> frozenset[int]:
        """Which of these contacts were erased: a page shows their cases' stored placeholders
        (core.contacts.privacy) in its reader's language, and no other case's same words."""
        ids = sorted({i for i in contact_ids if i is not None})
        if not ids:
            return frozenset()
        async with self._db.reading() as conn:
            return frozenset((await conn.execute(select(contacts.c.id).where(
                contacts.c.id.in_(ids), contacts.c.erased_at.is_not(None)))).scalars())

    async def product_codes(self, *, limit: int = 1000) -> list[ProductCode]:
        """The catalog's products for the Budget tab's suggestions."""
        async with self._db.reading() as conn:
            rows = await conn.execute(select(products.c.code, products.c.name).order_by(products.c.code).limit(limit))
            return [ProductCode(r.code, r.name) for r in rows]

    async def cases_per_type_and_category(self, *, since: datetime | None = None,
                                          until: datetime | None = None) -> dict[str, dict[str, int]]:
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
        async with self._db.reading() as conn:
            rows = (await conn.execute(q)).all()
        out: dict[str, dict[str, int]] = {}
        for case_type, category, count in rows:
            out.setdefault(case_type, {})[category or NO_CATEGORY] = count
        return out

    async def survey_outcomes_by_day(self, *, tz: ZoneInfo, since: datetime, until: datetime,
                                     now: datetime) -> list[DayOutcomes]:
        """Per local day in [since, until): surveys executed that day, and surveys whose
        window ended that day without being executed (expired, the inconsistencies)."""
        ri = rule_instances.c
        async with self._db.reading() as conn:
            executed = (await conn.execute(select(ri.executed_at).where(
                ri.status == _EXECUTED, ri.executed_at >= since, ri.executed_at < until)
                .limit(MAX_CHART_ROWS))).scalars()
            executed_days = [t.astimezone(tz).date() for t in executed]
            expired = (await conn.execute(select(ri.window_end).where(
                ri.status != _EXECUTED, ri.window_end >= since, ri.window_end < min(until, now))
                .limit(MAX_CHART_ROWS))).scalars()
            expired_days = [t.astimezone(tz).date() for t in expired]
        first, last = since.astimezone(tz).date(), (until - timedelta(microseconds=1)).astimezone(tz).date()
        days = [first + timedelta(days=i) for i in range(min((last - first).days + 1, MAX_CHART_DAYS))]
        ex, exp = Counter(executed_days), Counter(expired_days)
        return [DayOutcomes(d.isoformat(), ex.get(d, 0), exp.get(d, 0)) for d in days]

    async def score_distribution(self) -> list[QuestionScores]:
        """For each question, how many answers each score got, in the scale's order."""
        async with self._db.reading() as conn:
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
            out.append(QuestionScores(q.code, q.text_en or q.text_es, q.scale,
                                      tuple(ScoreCount(s, weights.get(s), counts.get(qid, {}).get(s, 0))
                                            for s in scores)))
        return out
